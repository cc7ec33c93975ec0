"""Inside and outside the organization, and the operator's command that sets a tenant's domains."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from service import cli as cli_module
from service.cli import digest as digest_cli
from service.insights import org
from service.store import tenants
from tests.support.factories import add_user


@pytest.mark.parametrize(("email", "internal", "external"), [
    ("ana@contoso.com", True, False), ("ANA@Contoso.COM", True, False), ("bo@eu.contoso.com", True, False),
    ("cy@fabrikam.example", True, False), ("dee@partner.example", False, True),
    ("eve@notcontoso.com", False, True), ("fay@contoso.com.evil.example", False, True), ("", False, False),
    ("no-at-sign", False, False), ("@contoso.com", False, False),
])
def test_an_address_is_internal_by_the_users_domain_or_the_tenants(db, email, internal, external):
    user = add_user(db, email="me@contoso.com")
    tenants.set_domains(db, user.tenant_id, ["fabrikam.example"])

    organization = org.for_user(db, user)

    assert (organization.is_internal(email), organization.is_external(email)) == (internal, external)


def test_domains_are_cleaned_or_refused():
    assert [org.clean_domain(d) for d in ("Contoso.COM.", "@x.example", "bad domain", "-x.com", "x", "a" * 300)] \
        == ["contoso.com", "x.example", None, None, None, None]


def test_the_tenants_domains_command_sets_and_shows_them(db, rt, monkeypatch):
    monkeypatch.setattr(digest_cli, "runtime_from_env", lambda: rt)
    runner = CliRunner()

    set_ = runner.invoke(cli_module.cli, ["tenants", "domains", "t-1", "Contoso.com", "fabrikam.example"])
    shown = runner.invoke(cli_module.cli, ["tenants", "domains", "t-1"])
    bad = runner.invoke(cli_module.cli, ["tenants", "domains", "t-1", "not a domain"])
    cleared = runner.invoke(cli_module.cli, ["tenants", "domains", "t-1", "--clear"])

    assert set_.exit_code == 0 and shown.output == "t-1: contoso.com, fabrikam.example\n"
    assert bad.exit_code == 1 and "not a domain name" in bad.output
    assert cleared.output == "t-1: (none)\n" and tenants.domains(db, "t-1") == []
