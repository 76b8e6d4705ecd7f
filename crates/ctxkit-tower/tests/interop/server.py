"""grpcio as the server, called by our client layer.

    python server.py

Prints `listening on 127.0.0.1:PORT`, then serves ctxkit.demo.v1.Worker until stdin closes.
Work(millis) answers at once with the time the call had left when it arrived
(`context.time_remaining()`, -1 without a deadline) when millis is 0; else it waits up to
millis ms while the call is active and prints `{"event": "terminated", "active": ...,
"waited_ms": ...}` when the call ends early (cancelled by the client, or its deadline).
"""

import json
import sys
import time
from concurrent import futures

import grpc

import demo_stubs

pb, pb_grpc = demo_stubs.load()


class Worker(pb_grpc.WorkerServicer):
    def Work(self, request, context):
        left = context.time_remaining()
        # grpcio reports "no deadline" as None or as an enormous number of seconds.
        remaining_ms = -1 if left is None or left > 1e8 else int(left * 1000)
        start = time.monotonic()
        end = start + request.millis / 1000.0
        while time.monotonic() < end:
            if not context.is_active():
                waited = (time.monotonic() - start) * 1000
                print(json.dumps({"event": "terminated", "active": False,
                                  "remaining_ms": remaining_ms, "waited_ms": waited}),
                      flush=True)
                return pb.WorkReply()
            time.sleep(0.002)
        return pb.WorkReply(completed=True, deadline_remaining_ms=remaining_ms)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_WorkerServicer_to_server(Worker(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("listening on 127.0.0.1:%d" % port, flush=True)
    sys.stdin.read()  # until the test closes stdin
    server.stop(0)


if __name__ == "__main__":
    main()
