"""moto's DynamoDB API answering one request at a time, for tests of concurrent transactions.

moto_server is threaded, and its TransactWriteItems is not isolated: it checks and applies one
action at a time, and on a failed condition restores a copy of the whole table taken when it
began, undoing whatever another request committed meanwhile. DynamoDB runs transactions
serializably. Serving one request at a time gives moto that property, so a test of racing
conditional writes (tests/placement_cli.rs) tests the writes, not moto's races.

Usage: python moto_serial.py  (binds 127.0.0.1 on a free port and prints it on one line)
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serial(environ, start_response):
    # The whole response is produced under the lock, so no two requests interleave.
    with lock:
        return [b"".join(app(environ, start_response))]


server = make_server("127.0.0.1", 0, serial, threaded=True, request_handler=MotoRequestHandler)
print(server.server_port, flush=True)
sys.stdout.close()
server.serve_forever()
