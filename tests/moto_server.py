"""moto's server (a real AWS API on loopback for Berth's adapter tests), serving one request at a time.

moto's own `moto_server` is multi-threaded without locking its backends, so two conditional
writes racing on the same DynamoDB item can both succeed there, which real DynamoDB never allows.
Serving requests one at a time restores the atomicity the adapters' concurrency tests check.
Arguments are moto_server's (-H HOST -p PORT).
"""
import moto.server as server

_run_simple = server.run_simple


def _serial_run_simple(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


server.run_simple = _serial_run_simple

if __name__ == "__main__":
    server.main()
