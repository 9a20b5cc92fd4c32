#!/usr/bin/env python3
"""Start `xtrail sensor` and time it: exec to the "sensor ready" log line,
peak RSS (VmHWM) at that point, and, with --reload FILE=NEW, the time of a
store reload (NEW renamed over FILE, as `trails compile` + mv does) as the
sensor logs it, with the peak RSS after it. With --traffic IFACE=PCAP the
capture's frames are sent out of IFACE (the peer of the monitored veth)
once the sensor is ready, and the RSS after them is reported. The ring
buffer's mapping (kernel map memory) is reported apart: *_ring_kb, and
*_rss_less_ring_kb is the RSS without it.
Prints one JSON object.
usage: sensorbench.py [--traffic IFACE=PCAP] [--reload FILE=NEW] -- CMD..."""
import json, os, re, signal, socket, struct, subprocess, sys, time

args = sys.argv[1:]
reload = traffic = None
while args[:1] in (["--reload"], ["--traffic"]):
    if args[0] == "--reload":
        reload = args[1].split("=", 1)
    else:
        traffic = args[1].split("=", 1)
    args = args[2:]
if args[:1] == ["--"]:
    args = args[1:]

def send_pcap(iface, path):
    """Send every frame of a classic little-endian Ethernet pcap."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    n = 0
    with open(path, "rb") as f:
        hdr = f.read(24)
        if hdr[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack("<I", hdr[20:24])[0] != 1:
            sys.exit("sensorbench: %s is not a little-endian Ethernet pcap" % path)
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            incl = struct.unpack("<IIII", rec)[2]
            s.send(f.read(incl))
            n += 1
    s.close()
    return n

def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0

def ring_kb(pid):
    """Resident kB of the process's BPF map mappings (the ring buffer,
    mapped twice): kernel map memory, reported apart from the process's
    own."""
    kb, bpf = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                bpf = line.rstrip().endswith("anon_inode:bpf-map")
            elif bpf and line.startswith("Rss:"):
                kb += int(line.split()[1])
    return kb

def hwm(pid):
    return status(pid, "VmHWM")

def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

t0 = time.monotonic()
p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
out, log = {}, []
def wait_for(pattern):
    for line in p.stderr:
        log.append(line)
        if pattern in line:
            return line
    sys.stderr.write("".join(log))
    sys.exit("sensorbench: the sensor ended before logging %r" % pattern)

try:
    wait_for("sensor ready")
    out["ready_s"] = round(time.monotonic() - t0, 3)
    out["ready_cpu_s"] = cpu(p.pid)
    out["ready_peak_rss_kb"] = hwm(p.pid)
    out["ready_rss_anon_kb"] = status(p.pid, "RssAnon")
    out["ready_rss_file_kb"] = status(p.pid, "RssFile")
    out["ready_ring_kb"] = ring_kb(p.pid)
    out["ready_rss_less_ring_kb"] = status(p.pid, "VmRSS") - out["ready_ring_kb"]
    if traffic:
        t1 = time.monotonic()
        out["traffic_frames"] = send_pcap(*traffic)
        out["traffic_send_s"] = round(time.monotonic() - t1, 3)
        time.sleep(2)  # the agent drains the ring
        out["traffic_peak_rss_kb"] = hwm(p.pid)
        out["traffic_rss_anon_kb"] = status(p.pid, "RssAnon")
        out["traffic_rss_file_kb"] = status(p.pid, "RssFile")
        out["traffic_rss_kb"] = status(p.pid, "VmRSS")
        out["traffic_ring_kb"] = ring_kb(p.pid)
        out["traffic_rss_less_ring_kb"] = out["traffic_rss_kb"] - out["traffic_ring_kb"]
    if reload:
        os.rename(reload[1], reload[0])
        p.send_signal(signal.SIGHUP)  # rather than wait for the file watch
        line = wait_for("trails reloaded")
        m = re.search(r"took=(\S+)", line)
        out["reload_took"] = m.group(1) if m else None
        out["reload_peak_rss_kb"] = hwm(p.pid)
finally:
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
print(json.dumps(out))
