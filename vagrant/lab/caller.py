"""A lab task that calls the service named in argv[1] east-west, ROUNDS
times: its virtual IP and task addresses from the embedded DNS (`NAME`,
`tasks.NAME`, the VIP's reverse name), an HTTP GET through the VIP, and a
UDP datagram to NAME:90 from an unconnected socket. One line per round."""
import socket
import sys
import time
import urllib.request

NAME = sys.argv[1]
ROUNDS = 12
for i in range(ROUNDS):
    try:
        vip = socket.gethostbyname(NAME)
        tasks = sorted(socket.gethostbyname_ex("tasks." + NAME)[2])
        ptr = socket.gethostbyaddr(vip)[0]
        url = "http://%s/" % NAME
        body = urllib.request.urlopen(url, timeout=5).read().decode().strip()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(5)
        u.sendto(b"hi", (NAME, 90))
        answer, peer = u.recvfrom(2048)
        u.close()
        udp_task = answer.decode().split()[0].split("=")[1]
        print("round=%d vip=%s ptr=%s tasks=%s udp_from=%s udp_task=%s %s"
              % (i, vip, ptr, ",".join(tasks), peer[0], udp_task, body), flush=True)
    except Exception as e:
        print("round=%d error %r" % (i, e), flush=True)
    time.sleep(0.3)
time.sleep(3600)
