"""grpcio as the client of the demo server.

    python client.py ADDR MODE

MODE is one of:
  complete  - Work(millis=10) with a 5 s timeout; prints the reply.
  deadline  - Work(millis=5000) with a 200 ms timeout; prints the status code.
  cancel    - Work(millis=5000) without a timeout, cancelled by the client after 200 ms.
Each prints one JSON line: {"code": ..., "completed": ..., "deadline_remaining_ms": ...}.
"""

import json
import sys
import time

import grpc

import demo_stubs


def main():
    addr, mode = sys.argv[1], sys.argv[2]
    pb, pb_grpc = demo_stubs.load()
    with grpc.insecure_channel(addr) as channel:
        stub = pb_grpc.WorkerStub(channel)
        result = {"code": "OK", "completed": None, "deadline_remaining_ms": None}
        try:
            if mode == "complete":
                reply = stub.Work(pb.WorkRequest(millis=10), timeout=5)
                result["completed"] = reply.completed
                result["deadline_remaining_ms"] = reply.deadline_remaining_ms
            elif mode == "deadline":
                stub.Work(pb.WorkRequest(millis=5000), timeout=0.2)
            elif mode == "cancel":
                future = stub.Work.future(pb.WorkRequest(millis=5000))
                time.sleep(0.2)
                future.cancel()
                future.exception()
                result["code"] = "CANCELLED" if future.cancelled() else "NOT_CANCELLED"
            else:
                raise SystemExit("unknown mode " + mode)
        except grpc.RpcError as err:
            result["code"] = err.code().name
        except grpc.FutureCancelledError:
            result["code"] = "CANCELLED"
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
