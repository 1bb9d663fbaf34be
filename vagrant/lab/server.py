"""A lab service task: HTTP on 80 answering `task=<id> client=<ip>:<port>`,
a UDP echo of the same on 90, and on 81 a TCP stream of one numbered line
every 100 ms. Each HTTP client's address also goes to stdout (the service's
logs). The same server as the namespaced end-to-end tests'."""
import http.server
import os
import socket
import socketserver
import threading
import time

TASK = os.environ["SHOAL_TASK_ID"]


class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("task=%s client=%s:%d\n" % (TASK, *self.client_address)).encode()
        print("request from %s:%d" % self.client_address, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Ticker(socketserver.BaseRequestHandler):
    def handle(self):
        n = 0
        while True:
            self.request.sendall(("%s %d\n" % (TASK, n)).encode())
            n += 1
            time.sleep(0.1)


def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 90))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(("task=%s client=%s:%d\n" % (TASK, *peer)).encode(), peer)


socketserver.ThreadingTCPServer.allow_reuse_address = True
threading.Thread(target=udp, daemon=True).start()
ticker = socketserver.ThreadingTCPServer(("0.0.0.0", 81), Ticker)
threading.Thread(target=ticker.serve_forever, daemon=True).start()
socketserver.ThreadingTCPServer(("0.0.0.0", 80), Web).serve_forever()
