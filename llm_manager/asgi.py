"""ASGI entry point: HTTP through Django, WebSockets through Channels (daphne serves both)."""

import gc
import inspect
import os
import sys

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from llm_manager.config import SettingError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llm_manager.settings")
try:
    django_asgi_app = get_asgi_application()
except SettingError as exc:  # a bad setting: one line naming it, not a traceback
    sys.stderr.write(f"llm-manager: {exc}\n")
    sys.exit(2)

from core.lean import PROXY_PREFIXES, ProxyASGIHandler, is_lean, lean_asgi_application  # noqa: E402

# The API skips the admin's middleware (sessions, messages, CSRF): each costs thread hops under
# ASGI, on every search, every token stream and every OpenAI call.
api_asgi_app = lean_asgi_application()
proxy_asgi_app = lean_asgi_application(ProxyASGIHandler)
# The console's styles and scripts, straight from the apps and static/ (no collectstatic, no other server).
static_asgi_app = ASGIStaticFilesHandler(django_asgi_app)


async def http_application(scope, receive, send):
    if scope["path"].startswith(PROXY_PREFIXES):
        app = proxy_asgi_app
    elif is_lean(scope["path"]):
        app = api_asgi_app
    elif scope["path"].startswith(static_asgi_app.base_url.path):
        app = static_asgi_app
    else:
        app = django_asgi_app
    await app(scope, receive, send)


from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core.auth import WebSocketApiKeyMiddleware  # noqa: E402
from downloads.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AuthMiddlewareStack(WebSocketApiKeyMiddleware(URLRouter(websocket_urlpatterns))),
    }
)


def _skip_twisted_form_parsing() -> None:
    """daphne hands each request's raw body to the application and never reads Twisted's `request.args`, yet
    Twisted parses every POST's Content-Type (through the email package) and form bodies into them: a tenth
    of the web server's CPU per proxied request. Twisted's own switch for that is turned off here."""
    from daphne.http_protocol import WebRequest
    from twisted.web.http import Request

    if "parsePOSTFormSubmission" not in inspect.signature(Request.__init__).parameters:
        return  # a Twisted without the switch
    parsing_init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("parsePOSTFormSubmission", False)
        parsing_init(self, *args, **kwargs)

    WebRequest.__init__ = __init__


_skip_twisted_form_parsing()

# Everything loaded so far lives as long as the process: keep it out of the
# cyclic collector's full passes, which otherwise stall random requests.
gc.freeze()
