"""The floor for bench_api.py: a Quart-Trio app shaped like w3gate's (before/after-request hooks, error
handlers, the same Hypercorn settings) that answers GET and POST /psa/pins with a constant page, with no
token check, no database and no CID check. Run by bench/bench_floor.py."""

import sys

import orjson
import trio
from hypercorn.trio import serve
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from w3gate.config import Settings
from w3gate.server import _hypercorn_config

PIN = {"requestid": "95349582-77cf-4673-9654-3042bf39184c", "status": "pinned",
       "created": "2026-11-29T00:00:00.000Z", "delegates": [], "info": {},
       "pin": {"cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "name": "file"}}
PAGE = orjson.dumps({"count": 10, "results": [PIN] * 10})

app = QuartTrio("floor", static_folder=None, template_folder=None)
app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
app.url_map.strict_slashes = False


@app.before_request
async def _owner() -> None:
    g.owner = request.headers.get("Authorization")


@app.after_request
async def _cors(response: Response) -> Response:
    request.headers.get("Origin")
    return response


@app.errorhandler(HTTPException)
async def _http_error(err: HTTPException) -> Response:
    return Response(b'{"error":{}}', status=err.code or 500, content_type="application/json")


@app.get("/psa/pins")
async def list_pins() -> Response:
    return Response(PAGE, status=200, content_type="application/json")


@app.post("/psa/pins")
async def add_pin() -> Response:
    orjson.loads(await request.get_data(cache=False))
    return Response(orjson.dumps(PIN), status=202, content_type="application/json")


if __name__ == "__main__":
    # w3gate's own Hypercorn settings, not a copy of them
    trio.run(serve, app, _hypercorn_config(Settings(port=int(sys.argv[1]))))
