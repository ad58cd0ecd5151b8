import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Debian's headless Chromium, driven over WebDriver by its `chromedriver`, for tests that look at pages the way a
/// person's browser shows them.
package final class HeadlessChromium {
    package static let browserPath = "/usr/bin/chromium"
    package static let driverPath = "/usr/bin/chromedriver"
    private let driver: LaunchedProcess
    private let base: URL
    private let profile: URL

    /// Whether the browser and its driver are installed (`make test` installs them on Debian).
    package static var isInstalled: Bool {
        FileManager.default.isExecutableFile(atPath: browserPath)
            && FileManager.default.isExecutableFile(atPath: driverPath)
    }

    /// Starts `chromedriver` on a port it binds itself (port 0, then the port its log names) and waits until it is ready.
    package init() async throws {
        let driver = try LaunchedProcess(Self.driverPath, ["--port=0", "--allowed-ips=127.0.0.1"])
        self.driver = driver
        var ready = false
        defer { if !ready { kill(driver.process.processIdentifier, SIGKILL) } }
        let port = try await driver.listeningPort(
            lineStartingWith: "ChromeDriver was started successfully on port", timeout: .seconds(30))
        base = URL(string: "http://127.0.0.1:\(port)")!
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString)")
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let status = try? await Self.call("GET", base.appendingPathComponent("status")),
                (status["value"] as? [String: Any])?["ready"] as? Bool == true
            {
                ready = true
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("chromedriver did not become ready: \(driver.log)")
    }

    /// A new browser window (1280×900, headless, a profile of its own).
    package func newSession() async throws -> WebDriverSession {
        var arguments = [
            "--headless=new", "--disable-gpu", "--window-size=1280,900", "--user-data-dir=\(profile.path)",
            "--lang=en-US",
        ]
        if getuid() == 0 { arguments.append("--no-sandbox") }  // Chromium's sandbox refuses to run as root
        let capabilities: [String: Any] = [
            "capabilities": [
                "alwaysMatch": [
                    "browserName": "chrome", "goog:chromeOptions": ["binary": Self.browserPath, "args": arguments],
                ]
            ]
        ]
        let answer = try await Self.call("POST", base.appendingPathComponent("session"), capabilities)
        guard let id = (answer["value"] as? [String: Any])?["sessionId"] as? String else {
            throw TestFailure("chromedriver gave no session: \(answer)")
        }
        return WebDriverSession(base: base.appendingPathComponent("session").appendingPathComponent(id))
    }

    package func stop() async {
        await driver.stop(signal: SIGKILL)  // chromedriver ignores SIGTERM; its browsers went with their sessions
        try? FileManager.default.removeItem(at: profile)
    }

    /// One WebDriver command; the answer's JSON.
    /// - Throws: ``TestFailure`` with the driver's error when it answers one.
    static func call(_ method: String, _ url: URL, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        let (status, data) = try await PlainHTTP.request(method, port: url.port ?? 80, path: url.path, json: payload)
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard status == 200 else {
            throw TestFailure(
                "WebDriver \(method) \(url.path): \((json["value"] as? [String: Any])?["message"] ?? String(decoding: data, as: UTF8.self))"
            )
        }
        return json
    }
}

/// A WebDriver command over ``RawHTTP``.
enum PlainHTTP {
    static func request(_ method: String, port: Int, path: String, json: Data?) async throws -> (
        status: Int, body: Data
    ) {
        let answer = await RawHTTP.request(
            port: port, method, Array(path.utf8), headers: json == nil ? [] : [("Content-Type", "application/json")],
            body: Array(json ?? Data()), timeout: .seconds(60))
        guard answer.status != 0 else { throw TestFailure("no HTTP answer from 127.0.0.1:\(port)") }
        return (answer.status, Data(answer.body.utf8))
    }
}

/// A browser window: go to a page, find elements by CSS selector, type, click, read the DOM, take a screenshot.
package struct WebDriverSession: Sendable {
    let base: URL
    private static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    package func go(to url: String) async throws {
        _ = try await HeadlessChromium.call("POST", base.appendingPathComponent("url"), ["url": url])
    }

    /// Waits until the window's address contains `fragment` and its page has loaded (a click on a link or a submit
    /// returns before the next page arrives).
    /// - Throws: ``TestFailure`` after `timeout`.
    package func waitForURL(containing fragment: String, timeout: Duration = .seconds(10)) async throws {
        try await waitUntil("an address containing \(fragment)", timeout: timeout) {
            guard try await currentURL().contains(fragment) else { return false }
            return try await evaluate("return document.readyState") as? String == "complete"
        }
    }

    /// Waits until `condition` holds (say what it waits for in `what`).
    /// - Throws: ``TestFailure`` after `timeout`.
    package func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool)
        async throws
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("waited \(timeout) for \(what)")
    }

    package func currentURL() async throws -> String {
        try await HeadlessChromium.call("GET", base.appendingPathComponent("url"))["value"] as? String ?? ""
    }

    /// The first element matching `selector`.
    /// - Throws: ``TestFailure`` when there is none.
    package func find(_ selector: String) async throws -> WebElement {
        let answer = try await HeadlessChromium.call(
            "POST", base.appendingPathComponent("element"), ["using": "css selector", "value": selector])
        guard let id = (answer["value"] as? [String: Any])?[Self.elementKey] as? String else {
            throw TestFailure("no element matches \(selector)")
        }
        return WebElement(session: self, id: id)
    }

    /// Every element matching `selector`.
    package func findAll(_ selector: String) async throws -> [WebElement] {
        let answer = try await HeadlessChromium.call(
            "POST", base.appendingPathComponent("elements"), ["using": "css selector", "value": selector])
        return (answer["value"] as? [[String: Any]] ?? []).compactMap { $0[Self.elementKey] as? String }.map {
            WebElement(session: self, id: $0)
        }
    }

    /// Runs `script` (a function body; `return` gives the answer) in the page and returns its JSON result.
    package func evaluate(_ script: String) async throws -> Any? {
        try await HeadlessChromium.call(
            "POST", base.appendingPathComponent("execute/sync"), ["script": script, "args": []])["value"]
    }

    /// The text a person sees in the page's `<main>` (or the whole body when it has none).
    package func visibleText() async throws -> String {
        try await evaluate("return (document.querySelector('main') || document.body).innerText") as? String ?? ""
    }

    /// Saves a PNG of the window to `path`.
    package func screenshot(to path: String) async throws {
        let answer = try await HeadlessChromium.call("GET", base.appendingPathComponent("screenshot"))
        guard let encoded = answer["value"] as? String, let png = Data(base64Encoded: encoded) else {
            throw TestFailure("no screenshot")
        }
        try png.write(to: URL(fileURLWithPath: path))
    }

    package func close() async {
        _ = try? await HeadlessChromium.call("DELETE", base)
    }
}

package struct WebElement: Sendable {
    let session: WebDriverSession
    let id: String

    private var url: URL { session.base.appendingPathComponent("element").appendingPathComponent(id) }

    package func click() async throws {
        _ = try await HeadlessChromium.call("POST", url.appendingPathComponent("click"), [:])
    }

    package func type(_ text: String) async throws {
        _ = try await HeadlessChromium.call("POST", url.appendingPathComponent("value"), ["text": text])
    }

    package func clear() async throws {
        _ = try await HeadlessChromium.call("POST", url.appendingPathComponent("clear"), [:])
    }

    package func text() async throws -> String {
        try await HeadlessChromium.call("GET", url.appendingPathComponent("text"))["value"] as? String ?? ""
    }

    package func attribute(_ name: String) async throws -> String? {
        try await HeadlessChromium.call("GET", url.appendingPathComponent("attribute").appendingPathComponent(name))[
            "value"] as? String
    }
}
