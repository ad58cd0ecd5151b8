#!/usr/bin/env python3
"""Signs in to a warren-dashboard in headless Chromium and saves a screenshot of one of its pages.

usage: dashboard-screenshot.py DASHBOARD_URL PATH OUTPUT.png   (the token in WARREN_DASHBOARD_TOKEN)

Drives Debian's chromedriver over plain WebDriver HTTP (no Selenium needed). Exits 0 with a note when Chromium is not
installed, so that `make demo` still ends by itself."""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["value"]


def main():
    dashboard, page, output = sys.argv[1], sys.argv[2], sys.argv[3]
    token = os.environ["WARREN_DASHBOARD_TOKEN"]
    driver_path, browser_path = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver_path or not browser_path:
        print("   (no screenshot: chromium and chromedriver are not installed; make deps installs them)")
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = subprocess.Popen([driver_path, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="warren-demo-chromium-")
    try:
        for _ in range(100):
            try:
                if call(base, "GET", "/status").get("ready"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        arguments = ["--headless=new", "--disable-gpu", "--window-size=1280,800", f"--user-data-dir={profile}"]
        if os.getuid() == 0:
            arguments.append("--no-sandbox")
        session = call(base, "POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": browser_path, "args": arguments}}}})["sessionId"]
        window = f"/session/{session}"
        try:
            call(base, "POST", f"{window}/url", {"url": f"{dashboard}/sign-in?next={urllib.parse.quote(page, safe='')}"})

            def element(selector):
                return call(base, "POST", f"{window}/element", {"using": "css selector", "value": selector})[ELEMENT]

            call(base, "POST", f"{window}/element/{element('#password')}/value", {"text": token})
            call(base, "POST", f"{window}/element/{element('button[type=submit]')}/click", {})
            for _ in range(100):
                if page.split("?")[0] in call(base, "GET", f"{window}/url") and \
                        call(base, "POST", f"{window}/execute/sync", {"script": "return document.readyState", "args": []}) == "complete":
                    break
                time.sleep(0.1)
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            with open(output, "wb") as file:
                file.write(base64.b64decode(call(base, "GET", f"{window}/screenshot")))
            print(f"   screenshot of {page}: {output}")
        finally:
            call(base, "DELETE", window)
    finally:
        driver.kill()  # chromedriver ignores SIGTERM
        driver.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    import urllib.parse
    main()
