"""The partner portal's URLs. None of them names a partner: the signed-in identity decides whose page it is."""

from __future__ import annotations

from django.urls import path

from consent import portal

app_name = "portal"

urlpatterns = [
    path("", portal.home, name="home"),
    path("sign-in", portal.sign_in, name="sign_in"),
    path("callback", portal.callback, name="callback"),
    path("welcome/<str:handoff>", portal.welcome, name="welcome"),
    path("sign-out", portal.sign_out, name="sign_out"),
    path("renew", portal.renew, name="renew"),
    path("check-gdap", portal.gdap_check, name="gdap_check"),
]
