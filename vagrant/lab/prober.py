"""A lab task that tries to open TCP connections to the ADDR:PORT arguments
after argv[1] (the nodes' own ports: ssh, the manager's 2377, gossip's 7946)
and, as a control, to the service named in argv[1] on port 80 through its
virtual IP. One line per target: `probe ADDR:PORT reached` when the
connection opened or was refused (the node's stack answered), `probe
ADDR:PORT blocked (WHY)` when it timed out or had no route; then `done`."""
import errno
import socket
import sys
import time

CONTROL = sys.argv[1]


def attempt(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((addr, port))
        return "reached", "open"
    except ConnectionRefusedError:
        return "reached", "refused"
    except socket.timeout:
        return "blocked", "timeout"
    except OSError as e:
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "blocked", errno.errorcode[e.errno]
        return "error", repr(e)
    finally:
        s.close()


# The control first, until the service answers through its VIP (its tasks
# may still be starting): the probes below mean something only once this
# task's network works.
for _ in range(30):
    state, why = attempt(CONTROL, 80)
    if state == "reached" and why == "open":
        break
    time.sleep(1)
print("control %s:80 %s (%s)" % (CONTROL, state, why), flush=True)
for target in sys.argv[2:]:
    addr, port = target.rsplit(":", 1)
    state, why = attempt(addr, int(port))
    print("probe %s %s (%s)" % (target, state, why), flush=True)
print("done", flush=True)
time.sleep(3600)
