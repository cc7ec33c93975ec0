"""HTTP surface of the emulated identity platform: discovery, JWKS, authorize, token, admin consent.

Errors take the identity platform's shapes: JSON `{"error", "error_description", "error_codes", ...}` from
the token endpoint, a redirect with `error`/`error_description`/`state` from authorize once the client and
redirect URI are trusted, and an HTML error page before that. The control blueprint answers with
Graph-shaped error bodies like the rest of the emulator's own API.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Blueprint, Response, jsonify, redirect, render_template_string, request
from werkzeug.exceptions import HTTPException

from emulator.identity import ANY_TENANT, OAuthError, SignInRequest

if TYPE_CHECKING:
    from emulator.identity import Identity

log = logging.getLogger(__name__)

SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:"Segoe UI",system-ui,sans-serif;background:#f2f2f2;margin:0}
main{max-width:440px;margin:48px auto;background:#fff;padding:32px 40px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:22px;font-weight:600}label{display:block;padding:8px 4px;border-bottom:1px solid #eee}
fieldset{border:0;padding:0;margin:16px 0}.muted{color:#555;font-size:13px}
button{padding:6px 20px;margin-right:8px;font-size:15px}#accept{background:#0067b8;color:#fff;border:0}
.error{color:#a80000}
</style></head><body><main>
<p class="muted">Microsoft (emulated)</p>
<h1>{{ title }}</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<p><strong>{{ app_name }}</strong> <span class="muted">({{ client_id }})</span> {{ ask }}</p>
<ul id="scopes">{% for scope in scopes %}<li>{{ scope }}</li>{% endfor %}</ul>
<form method="post" action="{{ action }}">
<input type="hidden" name="ctx" value="{{ ctx }}">
<fieldset><legend>Pick an account</legend>
{% for user in users %}<label><input type="radio" name="user_id" value="{{ user.id }}"
{% if user.id == selected %}checked{% endif %}> {{ user.display_name }}
<span class="muted">{{ user.user_principal_name or user.mail }}</span></label>
{% else %}<p>No accounts can sign in here.</p>{% endfor %}
</fieldset>
<button type="submit" name="action" value="accept" id="accept">Accept</button>
<button type="submit" name="action" value="cancel" id="cancel">Cancel</button>
</form></main></body></html>
"""

ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to your account</title></head>
<body><main><h1>Sorry, but we're having trouble signing you in.</h1>
<p id="error" role="alert">{{ description }}</p>
<p>Error: {{ error }}</p><p>Trace ID: {{ trace_id }}</p><p>Correlation ID: {{ correlation_id }}</p>
<p>Timestamp: {{ timestamp }}</p></main></body></html>
"""

FORM_POST_PAGE = """<html><head><title>Working...</title></head>
<body onload="javascript:document.forms[0].submit()">
<form method="POST" name="hiddenform" action="{{ action }}">
{% for name, value in params %}<input type="hidden" name="{{ name }}" value="{{ value }}" />
{% endfor %}<noscript><p>Script is disabled. Click Submit to continue.</p>
<input type="submit" value="Submit" /></noscript></form></body></html>
"""


# ----- helpers shared by both blueprints ------------------------------------------------------


def _host() -> str:
    return request.host_url.rstrip("/")


def _correlation_id() -> str:
    supplied = request.headers.get("client-request-id", "")
    try:
        return str(uuid.UUID(supplied))
    except ValueError:
        return str(uuid.uuid4())


def _error_fields(identity: Identity, err: OAuthError) -> dict[str, Any]:
    trace_id, correlation_id = str(uuid.uuid4()), _correlation_id()
    timestamp = identity.now().strftime("%Y-%m-%d %H:%M:%SZ")
    description = (f"{err.description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
                   f"\r\nTimestamp: {timestamp}")
    return {"error": err.error, "error_description": description, "error_codes": [err.code],
            "timestamp": timestamp, "trace_id": trace_id, "correlation_id": correlation_id,
            "error_uri": f"{_host()}/error?code={err.code}"}


def _json_error(identity: Identity, err: OAuthError) -> Response:
    body = _error_fields(identity, err)
    if err.suberror:
        body["suberror"] = err.suberror
    response = jsonify(body)
    response.status_code = err.status
    response.headers["Cache-Control"] = "no-store, no-cache"
    response.headers["Pragma"] = "no-cache"
    return response


def _error_page(identity: Identity, err: OAuthError) -> Response:
    fields = _error_fields(identity, err)
    page = render_template_string(ERROR_PAGE, description=err.description, **{
        k: fields[k] for k in ("error", "trace_id", "correlation_id", "timestamp")})
    return Response(page, status=400, mimetype="text/html")


def with_url(uri: str, params: dict[str, str], mode: str = "query") -> str:
    """`uri` with `params` added to its query (or fragment), keeping what it already carries."""
    encoded = urlencode(params)
    if mode == "fragment":
        return f"{uri.split('#', 1)[0]}#{encoded}"
    base, _, fragment = uri.partition("#")
    joiner = "&" if urlsplit(base).query else ("" if base.endswith("?") else "?")
    return f"{base}{joiner}{encoded}" + (f"#{fragment}" if fragment else "")


def error_params(identity: Identity, sign_in: SignInRequest | None, err: OAuthError) -> dict[str, str]:
    """Redirect parameters for an error, in the order Entra sends them."""
    params: dict[str, str] = {}
    if sign_in is not None and sign_in.kind.startswith("adminconsent"):
        params["admin_consent"] = "True"
    fields = _error_fields(identity, err)
    params["error"] = fields["error"]
    params["error_description"] = fields["error_description"]
    if err.suberror:
        params["error_subcode"] = err.suberror
    if sign_in is not None and sign_in.state is not None:
        params["state"] = sign_in.state
    return params


def _respond_to_client(sign_in: SignInRequest, params: dict[str, str]) -> Response:
    if sign_in.response_mode == "form_post":
        page = render_template_string(FORM_POST_PAGE, action=sign_in.redirect_uri, params=list(params.items()))
        return Response(page, mimetype="text/html")
    return redirect(with_url(sign_in.redirect_uri, params, sign_in.response_mode), code=302)


def _unexpected(identity: Identity, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        err = OAuthError("invalid_request", 900144, exc.description or exc.name, status=exc.code or 400)
    else:
        log.exception("identity: unexpected error on %s", request.path)
        err = OAuthError("server_error", 50000, "There was an error issuing a token or an issue with our "
                         "sign-in service.", status=500)
    return _json_error(identity, err)


def _sign_in_from_params(identity: Identity, kind: str, tenant: str,
                         params: dict[str, str]) -> tuple[SignInRequest | None, OAuthError | None, dict[str, str]]:
    """Validate a request; on a redirectable error give back a bare request to redirect to."""
    try:
        return identity.begin_sign_in(kind, tenant, params), None, params
    except OAuthError as err:
        if not err.redirectable:
            return None, err, params
        app = identity.apps.get(params.get("client_id"))
        mode = params.get("response_mode")
        bare = SignInRequest(
            ctx="", kind=kind, tenant=tenant, app=app, redirect_uri=params.get("redirect_uri", ""),
            response_mode=mode if mode in ("query", "fragment", "form_post") else "query",
            state=params.get("state"), scopes=None, nonce=None, code_challenge=None,
            code_challenge_method=None, login_hint=None, created=identity.now())
        return bare, err, params


# ----- the identity endpoints -----------------------------------------------------------------


def identity_blueprint(identity: Identity) -> Blueprint:
    """Discovery, JWKS, authorize (page), login (form target), token and admin consent."""
    bp = Blueprint("identity", __name__)
    bp.register_error_handler(Exception, functools.partial(_unexpected, identity))

    def json_errors(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            try:
                return view(*args, **kwargs)
            except OAuthError as err:
                return _json_error(identity, err)
        return wrapper

    @bp.get("/<tenant>/v2.0/.well-known/openid-configuration")
    @json_errors
    def openid_configuration_v2(tenant: str) -> Response:
        tenant = identity.resolve_tenant(tenant)
        host = _host()
        issuer_tenant = "{tenantid}" if tenant in ANY_TENANT else tenant
        return jsonify({
            "token_endpoint": f"{host}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{host}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{host}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{host}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{host}/{tenant}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{host}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time",
                                 "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash",
                                 "c_hash", "email"],
            "kerberos_endpoint": f"{host}/{tenant}/kerberos",
            "tenant_region_scope": None if tenant in ANY_TENANT else "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        })

    @bp.get("/<tenant>/.well-known/openid-configuration")
    @json_errors
    def openid_configuration_v1(tenant: str) -> Response:
        tenant = identity.resolve_tenant(tenant)
        host = _host()
        issuer_tenant = "{tenantid}" if tenant in ANY_TENANT else tenant
        return jsonify({
            "token_endpoint": f"{host}/{tenant}/oauth2/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{host}/common/discovery/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "scopes_supported": ["openid"],
            "issuer": f"https://sts.windows.net/{issuer_tenant}/",
            "microsoft_multi_refresh_token": True,
            "authorization_endpoint": f"{host}/{tenant}/oauth2/authorize",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{host}/{tenant}/oauth2/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time",
                                 "acr", "amr", "nonce", "email", "given_name", "family_name", "nickname"],
            "check_session_iframe": f"{host}/{tenant}/oauth2/checksession",
            "userinfo_endpoint": f"{host}/{tenant}/openid/userinfo",
            "tenant_region_scope": None if tenant in ANY_TENANT else "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        })

    @bp.get("/<tenant>/discovery/v2.0/keys")
    @bp.get("/<tenant>/discovery/keys")
    @json_errors
    def keys(tenant: str) -> Response:
        identity.resolve_tenant(tenant)
        return jsonify(identity.jwks())

    def start(kind: str, tenant: str) -> Response:
        params = (request.form if request.method == "POST" else request.args).to_dict()
        sign_in, err, _ = _sign_in_from_params(identity, kind, tenant, params)
        if err is not None:
            if sign_in is None:
                return _error_page(identity, err)
            return _respond_to_client(sign_in, error_params(identity, sign_in, err))
        assert sign_in is not None  # noqa: S101 - no error means a request
        return _page(sign_in)

    def _page(sign_in: SignInRequest, error: str | None = None) -> Response:
        hint = identity.lookup_user(sign_in.login_hint)
        users = identity.sign_in_users(sign_in.tenant)
        admin = sign_in.kind.startswith("adminconsent")
        if sign_in.scopes is not None:
            scopes = list(sign_in.scopes.requested)
        else:
            scopes = [f"{role} (application permission)" for role in sign_in.app.roles]
        page = render_template_string(
            SIGN_IN_PAGE, title="Permissions requested" + (" — accept for your organization" if admin else ""),
            ask="needs permission to:" if not admin else "needs permission, for everyone in your organization, to:",
            app_name=sign_in.app.display_name, client_id=sign_in.app.client_id, scopes=scopes, users=users,
            selected=hint["id"] if hint else None, ctx=sign_in.ctx, action=f"/{sign_in.tenant}/login",
            error=error)
        return Response(page, status=400 if error else 200, mimetype="text/html")

    @bp.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
    def authorize(tenant: str) -> Response:
        return start("authorize", tenant)

    @bp.get("/<tenant>/adminconsent")
    def admin_consent(tenant: str) -> Response:
        return start("adminconsent", tenant)

    @bp.get("/<tenant>/v2.0/adminconsent")
    def admin_consent_v2(tenant: str) -> Response:
        return start("adminconsent_v2", tenant)

    @bp.post("/<tenant>/login")
    def login(tenant: str) -> Response:
        sign_in = identity.pending(request.form.get("ctx"))
        if sign_in is None:
            return _error_page(identity, OAuthError(
                "invalid_request", 50058, "This sign-in request has expired or was already completed. "
                "Start again from the application.", redirectable=False))
        accept = request.form.get("action") == "accept"
        user_ref = request.form.get("user_id")
        if accept and not user_ref:
            return _page(sign_in, error="Pick an account to continue.")
        try:
            params = identity.finish_sign_in(sign_in, user_ref, accept)
        except OAuthError as err:
            params = error_params(identity, sign_in, err)
        return _respond_to_client(sign_in, params)

    @bp.post("/<tenant>/oauth2/v2.0/token")
    @json_errors
    def token(tenant: str) -> Response:
        basic = None
        if request.authorization and request.authorization.type == "basic":
            basic = (request.authorization.username or "", request.authorization.password or "")
        body = identity.token(tenant, request.form.to_dict(), basic, _host())
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store, no-cache"
        response.headers["Pragma"] = "no-cache"
        return response

    return bp


# ----- test controls ----------------------------------------------------------------------------


class ControlError(Exception):
    """Bad input to a control endpoint; answered with a Graph-shaped error body."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def graph_error(identity: Identity, code: str, message: str, status: int) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "innerError": {
        "date": identity.now().strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4()),
        "client-request-id": _correlation_id()}}})
    response.status_code = status
    return response


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ControlError("BadRequest", "The request body must be a JSON object.")
    return data


def _text(data: dict, name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ControlError("BadRequest", f"'{name}' must be a non-empty string.")
    return value


def _seconds(data: dict, name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 10 * 365 * 86400:
        raise ControlError("BadRequest", f"'{name}' must be a number of seconds between 1 and 315360000.")
    return int(value)


def _strings(data: dict, name: str, default: list[str] | None = None) -> list[str]:
    value = data.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ControlError("BadRequest", f"'{name}' must be a list of non-empty strings.")
    return value


SIGN_IN_PATHS = {("oauth2", "v2.0", "authorize"): "authorize", ("adminconsent",): "adminconsent",
                 ("v2.0", "adminconsent"): "adminconsent_v2"}


def complete_sign_in(identity: Identity, url: str, user_ref: str, accept: bool) -> dict[str, Any]:
    """Complete an authorize/admin-consent URL as `user_ref` would in the browser; describe the redirect."""
    parts = urlsplit(url)
    segments = tuple(s for s in parts.path.split("/") if s)
    kind = SIGN_IN_PATHS.get(segments[1:]) if len(segments) > 1 else None
    if kind is None:
        raise ControlError("BadRequest", "'url' must be an /{tenant}/oauth2/v2.0/authorize, /{tenant}/adminconsent "
                                         "or /{tenant}/v2.0/adminconsent URL.")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    sign_in, err, _ = _sign_in_from_params(identity, kind, segments[0], params)
    if err is None and sign_in is not None:
        try:
            result = identity.finish_sign_in(sign_in, user_ref, accept)
        except OAuthError as failure:
            result = error_params(identity, sign_in, failure)
    elif sign_in is not None and err is not None:
        result = error_params(identity, sign_in, err)
    else:
        assert err is not None  # noqa: S101 - no request means an error
        raise ControlError(err.error, err.description)
    assert sign_in is not None  # noqa: S101
    return {"redirect_url": with_url(sign_in.redirect_uri, result,
                                     "fragment" if sign_in.response_mode == "fragment" else "query"),
            "redirect_uri": sign_in.redirect_uri, "response_mode": sign_in.response_mode, "params": result}


def control_blueprint(identity: Identity) -> Blueprint:
    """Revoke grants, set token lifetimes, deny consent, register apps, complete sign-ins.

    POST /revoke {user_id, client_id?} -> {revoked}; GET|POST /lifetimes {access_token_seconds?,
    refresh_token_seconds?, code_seconds?}; POST /deny-consent {user_id, error: access_denied |
    consent_required | null}; GET|POST /apps {client_id, client_secret, redirect_uris, display_name?,
    scopes?, roles?}; POST /sign-in {url, user_id, action: accept | cancel} -> {redirect_url, redirect_uri,
    response_mode, params}; GET /grants?user_id=; GET /consents?tenant=&client_id=; POST /rotate-signing-key.
    `user_id` may also be a mail address or UPN.
    """
    bp = Blueprint("identity_control", __name__)

    @bp.errorhandler(ControlError)
    def control_error(err: ControlError) -> Response:
        return graph_error(identity, err.code, err.message, err.status)

    @bp.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return graph_error(identity, exc.name.replace(" ", ""), exc.description or exc.name, exc.code or 400)
        log.exception("identity control: unexpected error on %s", request.path)
        return graph_error(identity, "InternalServerError", "The emulator failed to handle the request.", 500)

    def known_user(data: dict) -> dict:
        user = identity.lookup_user(_text(data, "user_id"))
        if user is None:
            raise ControlError("Request_ResourceNotFound", "No user with that id, mail or UPN.", 404)
        return user

    @bp.post("/revoke")
    def revoke() -> Response:
        data = _body()
        user = known_user(data)
        client_id = _text(data, "client_id", required=False)
        return jsonify({"revoked": identity.revoke(user["id"], client_id)})

    @bp.route("/lifetimes", methods=["GET", "POST"])
    def lifetimes() -> Response:
        if request.method == "GET":
            return jsonify(identity.lifetimes())
        data = _body()
        return jsonify(identity.set_lifetimes(_seconds(data, "access_token_seconds"),
                                              _seconds(data, "refresh_token_seconds"),
                                              _seconds(data, "code_seconds")))

    @bp.post("/deny-consent")
    def deny_consent() -> Response:
        data = _body()
        user = known_user(data)
        error = data.get("error", "access_denied")
        if error not in ("access_denied", "consent_required", None):
            raise ControlError("BadRequest", "'error' must be 'access_denied', 'consent_required' or null.")
        identity.deny_consent(user["id"], error)
        return jsonify({"user_id": user["id"], "error": error})

    @bp.route("/apps", methods=["GET", "POST"])
    def apps() -> Response:
        if request.method == "GET":
            return jsonify({"value": [{"client_id": a.client_id, "display_name": a.display_name,
                                       "redirect_uris": list(a.redirect_uris), "scopes": list(a.scopes),
                                       "roles": list(a.roles)} for a in identity.apps.all()]})
        data = _body()
        options: dict[str, Any] = {}
        if "display_name" in data:
            options["display_name"] = _text(data, "display_name")
        for name in ("scopes", "roles"):
            if name in data:
                options[name] = tuple(_strings(data, name))
        app = identity.apps.register(_text(data, "client_id"), _text(data, "client_secret"),
                                     _strings(data, "redirect_uris", []), **options)
        response = jsonify({"client_id": app.client_id, "display_name": app.display_name,
                            "redirect_uris": list(app.redirect_uris)})
        response.status_code = 201
        return response

    @bp.post("/sign-in")
    def sign_in() -> Response:
        data = _body()
        action = data.get("action", "accept")
        if action not in ("accept", "cancel"):
            raise ControlError("BadRequest", "'action' must be 'accept' or 'cancel'.")
        user = known_user(data)
        return jsonify(complete_sign_in(identity, _text(data, "url"), user["id"], action == "accept"))

    @bp.get("/grants")
    def grants() -> Response:
        return jsonify({"value": identity.grants(request.args.get("user_id"))})

    @bp.get("/consents")
    def consents() -> Response:
        tenant, client_id = request.args.get("tenant", ""), request.args.get("client_id", "")
        return jsonify({"tenant": tenant, "client_id": client_id,
                        "consent": identity.tenant_consent(tenant, client_id)})

    @bp.post("/apps/<client_id>/certificates")
    def add_certificate(client_id: str) -> Response:
        """Add a certificate credential (PEM) to an app registration, as an admin uploads one."""
        app = identity.apps.get(client_id)
        if app is None:
            raise ControlError("Request_ResourceNotFound", "No app with that client id.", 404)
        try:
            thumbprint = app.add_certificate(_text(_body(), "pem"))
        except ValueError:
            raise ControlError("BadRequest", "'pem' must be a PEM certificate.") from None
        return jsonify({"client_id": app.client_id, "thumbprint": thumbprint}), 201

    @bp.post("/apps/<client_id>/certificates/remove")
    def remove_certificate(client_id: str) -> Response:
        app = identity.apps.get(client_id)
        if app is None:
            raise ControlError("Request_ResourceNotFound", "No app with that client id.", 404)
        try:
            app.remove_certificate(_text(_body(), "pem"))
        except ValueError:
            raise ControlError("BadRequest", "'pem' must be a PEM certificate.") from None
        return jsonify({"client_id": app.client_id}), 200

    @bp.post("/consents/revoke")
    def revoke_consent() -> Response:
        """The tenant's admin removes the app's grants (deletes the enterprise application)."""
        data = _body()
        roles = _strings(data, "roles") if "roles" in data else None
        return jsonify({"revoked": identity.revoke_tenant_consent(_text(data, "tenant"), _text(data, "client_id"),
                                                                  roles)})

    @bp.post("/require-service-principal")
    def require_service_principal() -> Response:
        identity.require_service_principal = bool(_body().get("enabled", True))
        return jsonify({"enabled": identity.require_service_principal})

    @bp.post("/rotate-signing-key")
    def rotate_signing_key() -> Response:
        return jsonify({"kid": identity.rotate_signing_key()})

    return bp
