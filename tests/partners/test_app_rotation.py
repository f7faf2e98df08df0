"""Rotating the vendor app's certificate with no downtime against the simulator's Graph and Entra: addKey with a
proof signed by the current certificate, a probe, the switch, removeKey after the overlap; each step recorded and
audited, and a rotation cut off after any step resumes where it stopped."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from cpv.config import CERTIFICATE, AppCredential, Credential
from microsoft import app_credentials
from partners import app_rotation
from partners.app_rotation import RotationPlan, app_key_rotation_continue, app_key_rotation_start
from partners.models import AppKeyRotation, AuditEvent
from simulator.applications import key_id
from simulator.world import ClientCertificate
from tests.app_certificates import app_certificate, register
from tests.factories import client_for
from tests.managed_identities import managed

pytestmark = pytest.mark.django_db
Step = AppKeyRotation.Step
LATER = timedelta(hours=25)


@pytest.fixture
def current(cpv_sim, settings, tmp_path):  # type: ignore[no-untyped-def]
    """The app signing in with a certificate of its own at tmp_path/app.pem, registered in the simulator."""
    path, certificate = app_certificate(tmp_path, "app", not_after_days=20)
    register(cpv_sim.world.cpv_app, certificate)
    settings.CPV_APP = AppCredential(
        client_id=cpv_sim.env["CPV_CLIENT_ID"],
        credentials=(Credential(CERTIFICATE, certificate_path=path),),
        tenant_id=cpv_sim.env["CPV_VENDOR_TENANT_ID"],
    )
    return path, certificate


@pytest.fixture
def new_path(tmp_path) -> str:  # type: ignore[no-untyped-def]
    path, _ = app_certificate(tmp_path, "next", not_after_days=400)
    return path


def _thumbprints(sim) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.thumbprint_sha256 for c in sim.world.cpv_app.certificates]


def _start(settings, new_path: str) -> AppKeyRotation:  # type: ignore[no-untyped-def]
    rotation = app_key_rotation_start(
        actor=None, app=settings.CPV_APP, new_certificate_path=new_path, overlap=timedelta(hours=24)
    )
    assert isinstance(rotation, AppKeyRotation)
    return rotation


def test_a_rotation_adds_probes_switches_and_removes_the_old_key_after_the_overlap(  # type: ignore[no-untyped-def]
    cpv_sim, settings, current, new_path
) -> None:
    path, old = current
    new = app_credentials.certificate_facts(new_path).thumbprint_sha256

    rotation = app_key_rotation_continue(actor=None, rotation=_start(settings, new_path))

    assert rotation.step == Step.SWITCHED and rotation.last_error == ""
    assert new in _thumbprints(cpv_sim) and old.thumbprint_sha256 in _thumbprints(cpv_sim)
    assert app_credentials.certificate_facts(path).thumbprint_sha256 == new
    assert app_credentials.certificate_facts(path + ".previous").thumbprint_sha256 == old.thumbprint_sha256

    rotation = app_key_rotation_continue(actor=None, rotation=rotation, now=timezone.now() + LATER)

    assert rotation.step == Step.DONE and rotation.finished_at is not None
    assert old.thumbprint_sha256 not in _thumbprints(cpv_sim) and new in _thumbprints(cpv_sim)
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "app_key.rotation_started",
        "app_key.added",
        "app_key.probed",
        "app_key.switched",
        "app_key.old_removed",
    ]
    # The new key was proved by the old one, and the old one's removal by the new one.
    proofs = [e for e in cpv_sim.control.log(service="graph") if e["path"].endswith(("addKey", "removeKey"))]
    assert [e["status"] for e in proofs] == [200, 204]


def test_the_old_key_stays_until_the_overlap_has_passed(cpv_sim, settings, current, new_path) -> None:  # type: ignore[no-untyped-def]
    rotation = app_key_rotation_continue(actor=None, rotation=_start(settings, new_path))

    again = app_key_rotation_continue(actor=None, rotation=rotation, now=timezone.now() + timedelta(hours=1))

    assert again.step == Step.SWITCHED
    assert current[1].thumbprint_sha256 in _thumbprints(cpv_sim)


@pytest.mark.parametrize("stopped_after", [Step.STARTED, Step.KEY_ADDED, Step.PROBED, Step.SWITCHED])
def test_a_rotation_interrupted_after_each_step_resumes_without_doing_a_step_twice(  # type: ignore[no-untyped-def]
    stopped_after, cpv_sim, settings, current, new_path, monkeypatch
) -> None:
    following = {
        Step.STARTED: "_add",
        Step.KEY_ADDED: "_probe",
        Step.PROBED: "_switch",
        Step.SWITCHED: "_remove",
    }
    rotation = _start(settings, new_path)
    if stopped_after != Step.STARTED:
        # The process dies as the step after `stopped_after` begins (after SWITCHED, the rotation waits anyway).
        broken = following[stopped_after] if stopped_after != Step.SWITCHED else None
        if broken is not None:
            original = getattr(app_rotation, broken)

            def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
                raise SystemExit("killed")

            monkeypatch.setattr(app_rotation, broken, crash)
            with pytest.raises(SystemExit):
                app_key_rotation_continue(actor=None, rotation=rotation)
            monkeypatch.setattr(app_rotation, broken, original)
        else:
            app_key_rotation_continue(actor=None, rotation=rotation)
        rotation.refresh_from_db()
        assert rotation.step == stopped_after

    resumed = app_key_rotation_continue(actor=None, rotation=rotation)
    done = app_key_rotation_continue(actor=None, rotation=resumed, now=timezone.now() + LATER)

    assert done.step == Step.DONE
    new = app_credentials.certificate_facts(new_path).thumbprint_sha256
    assert _thumbprints(cpv_sim).count(new) == 1
    assert current[1].thumbprint_sha256 not in _thumbprints(cpv_sim)
    assert AuditEvent.objects.filter(action="app_key.added").count() == 1


def test_work_done_before_a_crash_is_found_and_not_done_again(cpv_sim, settings, current, new_path) -> None:  # type: ignore[no-untyped-def]
    rotation = _start(settings, new_path)
    # Cut off between each piece of work and its record: the key added, the file switched, the old key removed.
    pem = Path(new_path).read_text()
    cert_pem = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
    cpv_sim.world.cpv_app.certificates.append(ClientCertificate(certificate_pem=cert_pem, key_id="added-before"))

    rotation = app_key_rotation_continue(actor=None, rotation=rotation)
    assert rotation.new_key_id == "added-before" and rotation.step == Step.SWITCHED

    cpv_sim.world.cpv_app.certificates[:] = [
        c for c in cpv_sim.world.cpv_app.certificates if key_id(c) != rotation.old_key_id
    ]
    done = app_key_rotation_continue(actor=None, rotation=rotation, now=timezone.now() + LATER)

    assert done.step == Step.DONE
    assert _thumbprints(cpv_sim).count(app_credentials.certificate_facts(new_path).thumbprint_sha256) == 1


def test_a_dry_run_changes_nothing(cpv_sim, settings, current, new_path) -> None:  # type: ignore[no-untyped-def]
    cpv_sim.control.clear_log()

    plan = app_key_rotation_start(
        actor=None, app=settings.CPV_APP, new_certificate_path=new_path, overlap=timedelta(hours=24), dry_run=True
    )

    assert isinstance(plan, RotationPlan) and "addKey" in plan.steps[0]
    assert AppKeyRotation.objects.count() == 0 and AuditEvent.objects.count() == 0
    assert cpv_sim.control.log() == []


def test_the_command_generates_a_certificate_and_runs_the_rotation(cpv_sim, settings, current, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("app_credential_rotate", "--generate", "--days", "90")

    out = capsys.readouterr().out
    assert "The control panel signs in with the new certificate" in out and "run again then" in out
    (rotation,) = AppKeyRotation.objects.all()
    assert rotation.step == Step.SWITCHED
    assert Path(current[0] + ".new").stat().st_mode & 0o777 == 0o600


def test_without_reading_the_registration_the_rotation_stops_and_says_why(  # type: ignore[no-untyped-def]
    cpv_sim, settings, current, new_path
) -> None:
    cpv_sim.world.cpv_app.graph_app_roles = []

    rotation = app_key_rotation_continue(actor=None, rotation=_start(settings, new_path))

    assert rotation.step == Step.STARTED and "Application.Read.All" in rotation.last_error


def test_the_staff_action_rotates_and_says_where_it_stands(cpv_sim, settings, current, admin_user) -> None:  # type: ignore[no-untyped-def]
    staff = client_for(admin_user)

    planned = staff.post("/settings/app-key-rotation", {"dry_run": "1"}, follow=True)
    assert AppKeyRotation.objects.count() == 0
    assert "The rotation would: generate a new key and certificate" in planned.content.decode()

    response = staff.post("/settings/app-key-rotation", follow=True)

    page = response.content.decode()
    assert "Certificate rotation: The control panel signs in with the new certificate." in page
    assert "Continue the rotation" in page
    (rotation,) = AppKeyRotation.objects.all()
    assert AuditEvent.objects.filter(action="app_key.rotation_started", actor=admin_user).exists()
    assert rotation.step == Step.SWITCHED


def test_only_an_admin_may_rotate(cpv_sim, settings, current, operator) -> None:  # type: ignore[no-untyped-def]
    response = client_for(operator).post("/settings/app-key-rotation")

    assert response.status_code in (403, 404)
    assert AppKeyRotation.objects.count() == 0


def test_the_proof_of_possession_has_no_padding(cpv_sim, current) -> None:  # type: ignore[no-untyped-def]
    path, _ = current
    proof = app_credentials.proof_of_possession(certificate_path=path, application_object_id="0" * 36)
    header, payload, _signature = proof.split(".")
    # the segments' lengths are such that base64 would pad them: the proof leaves the padding out
    assert any(len(segment) % 4 for segment in (header, payload))
    assert "=" not in proof


def test_a_proof_graph_refuses_stops_the_rotation_and_says_why(  # type: ignore[no-untyped-def]
    cpv_sim, settings, current, new_path, monkeypatch
) -> None:
    path, _ = current
    signed = app_credentials.proof_of_possession

    def padded(**kwargs: str) -> str:
        header, payload, signature = signed(**kwargs).split(".")
        return f"{header}{'=' * (-len(header) % 4)}.{payload}{'=' * (-len(payload) % 4)}.{signature}"

    monkeypatch.setattr(app_credentials, "proof_of_possession", padded)

    rotation = app_key_rotation_continue(actor=None, rotation=_start(settings, new_path))

    assert rotation.step == Step.STARTED
    assert "refused the proof of possession" in rotation.last_error and "Authentication_MissingOrMalformed" in (
        rotation.last_error
    )
    assert path in rotation.last_error
    assert app_credentials.certificate_facts(new_path).thumbprint_sha256 not in _thumbprints(cpv_sim)


def test_a_certificate_kept_in_key_vault_is_not_rotated_here_and_the_refusal_says_why(  # type: ignore[no-untyped-def]
    cpv_sim, settings, new_path
) -> None:
    in_vault = f"{cpv_sim.vault_url}certificates/cpv-app"
    settings.CPV_APP = AppCredential(
        client_id=cpv_sim.env["CPV_CLIENT_ID"], credentials=(Credential(CERTIFICATE, certificate_path=in_vault),)
    )

    with pytest.raises(app_rotation.RotationError, match=r"is kept in Key Vault .*: renew it there"):
        app_key_rotation_start(
            actor=None, app=settings.CPV_APP, new_certificate_path=new_path, overlap=timedelta(hours=24)
        )
    assert AppKeyRotation.objects.count() == 0


def test_a_managed_identity_is_not_rotated_and_the_refusal_says_why(cpv_sim, settings, new_path) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP = AppCredential(
        client_id=cpv_sim.env["CPV_CLIENT_ID"],
        credentials=(
            managed("11111111-2222-4333-8444-555555555555"),
            Credential(CERTIFICATE, certificate_path=cpv_sim.env["CPV_CLIENT_CERTIFICATE"]),
        ),
    )

    with pytest.raises(app_rotation.RotationError, match=r"managed identity 11111111-.* has no key to roll"):
        app_key_rotation_start(
            actor=None, app=settings.CPV_APP, new_certificate_path=new_path, overlap=timedelta(hours=24)
        )
    assert AppKeyRotation.objects.count() == 0
