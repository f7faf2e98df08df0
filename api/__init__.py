"""The token API: short-lived access tokens and reads for the vendor's other systems, served by the `api` process."""
