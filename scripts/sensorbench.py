#!/usr/bin/env python3
"""Start `xtrail sensor` and time it: exec to the "sensor ready" log line,
peak RSS (VmHWM) at that point, and, with --reload FILE=NEW, the time of a
store reload (NEW renamed over FILE, as `trails compile` + mv does) as the
sensor logs it, with the peak RSS after it. Prints one JSON object.
usage: sensorbench.py [--reload FILE=NEW] -- CMD..."""
import json, os, re, signal, subprocess, sys, time

args = sys.argv[1:]
reload = None
if args[:1] == ["--reload"]:
    reload, args = args[1].split("=", 1), args[2:]
if args[:1] == ["--"]:
    args = args[1:]

def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0

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
