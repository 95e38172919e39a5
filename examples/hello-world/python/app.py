# pythonapp of Dapr's hello-world quickstart, with Python's standard library only (no
# pip install): every second it posts a new order to nodeapp's neworder method through
# its own sidecar, which finds nodeapp and forwards the call.

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

dapr_port = os.getenv("DAPR_HTTP_PORT", 3500)
dapr_url = "http://localhost:{}/v1.0/invoke/nodeapp/method/neworder".format(dapr_port)

# outrigger run and stop send SIGTERM: exit cleanly between two orders.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

n = 0
while True:
    n += 1
    message = {"data": {"orderId": n}}

    try:
        request = urllib.request.Request(
            dapr_url,
            data=json.dumps(message).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    except urllib.error.HTTPError as e:
        print("HTTP %d => %s" % (e.code, e.read().decode("utf-8")), flush=True)
    except Exception as e:
        print(e, flush=True)

    time.sleep(1)
