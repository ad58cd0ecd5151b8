import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLedger
import WarrenTestSupport

/// Every parameter of every route, hostile, against the dashboard over both stores with a replay runner on the test
/// broker (`DashboardHardeningTests` holds the rest).
@Suite("The dashboard against hostile clients (broker)", .serialized)
struct DashboardHardeningBrokerTests {
    /// Values no parser of the dashboard may trap on: each is sent percent-encoded where a query or a form carries it.
    static let hostile: [String] = [
        "99999999999999d", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "99999999999999999999999",
        "-1", "0", "", String(repeating: "a", count: 100_000), "\u{0}", "\u{1}\u{1F}\u{7F}\n\r\t",
        "<script>alert(1)</script>",
        "../../etc/passwd", "1e308", "NaN", "\u{202E}gnp.exe", "24x", "7d7d", "2026-13-45T99:99:99Z",
    ]
    /// Escapes sent as they are, whatever they decode to: invalid UTF-8, incomplete and malformed escapes.
    static let rawEscapes: [String] = ["%ff%fe%fd", "%zz", "%", "abc%", "%c3%28", "%00%00"]

    static func encoded(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }

    /// Each value of the hostile table for `name` (the others absent), then the raw escapes, then the parameter twice.
    static func targets(_ path: String, _ name: String) -> [String] {
        let separator = path.contains("?") ? "&" : "?"
        return hostile.map { "\(path)\(separator)\(name)=\(encoded($0))" }
            + rawEscapes.map { "\(path)\(separator)\(name)=\($0)" }
            + ["\(path)\(separator)\(name)=1&\(name)=2&\(name)=99999999999999d"]
    }

    /// What a hostile request may get: a page or JSON as usual, a redirect, or a refusal in the 4xx range (and 503 from
    /// the routes that walk a dead-letter queue, which this dashboard has no broker for).
    static func acceptable(_ answer: RawHTTP.Answer) -> Bool {
        [200, 202, 303, 400, 403, 404, 413, 414, 429, 431].contains(answer.status)
            || (answer.status == 503 && answer.body.contains("needs a broker"))
    }

    @Test(.tags(.broker, .postgres), .needs(.broker, .postgres), arguments: StoreKind.allCases)
    func everyParameterOfEveryRouteAnswers400OrAPageAndTheProcessKeepsServing(_ kind: StoreKind) async throws {
        try await withCleanups { cleanups in
            // With a runner, so that the operations' routes parse and search the store rather than answer "no broker".
            let transport = RabbitMQTransport(
                endpoints: [try AMQPEndpoint(uri: try await TestBroker.url())], logger: TestBroker.quietLogger())
            cleanups.add { await transport.close() }
            try await DashboardScene.with(
                kind,
                runner: { DeadLetterOperationRunner(store: $0, transport: transport, logger: TestBroker.quietLogger()) }
            ) { scene in
                let getParameters: [(String, [String])] = [
                    ("/sign-in", ["next"]),
                    ("/jobs", ["id", "type", "queue", "status", "since", "until", "limit", "after"]),
                    ("/failures", ["queue", "since", "until", "limit"]),
                    ("/failures/group-1", ["queue", "since", "until", "limit", "after"]),
                    ("/audit", ["before"]),
                    ("/operations/new", ["action", "queue", "since", "until"]),
                    ("/failures/group-1/replay", ["queue", "since", "until"]),
                    ("/api/jobs", ["queue", "type", "status", "since", "until", "limit", "after"]),
                    ("/api/dead-letters", ["group", "queue", "since", "until", "limit", "after"]),
                    ("/api/failures", ["queue", "since", "until", "limit"]),
                    ("/api/audit", ["limit", "before"]),
                    ("/api/operations", ["limit"]),
                ]
                var failures: [String] = []
                for (path, names) in getParameters {
                    for name in names {
                        for target in DashboardHardeningBrokerTests.targets(path, name) {
                            let answer = await scene.request("GET", target, headers: scene.operatorAuth)
                            if !Self.acceptable(answer) {
                                failures.append(
                                    "GET \(target.prefix(120)) → \(answer.status) \(answer.body.suffix(300))")
                            }
                        }
                    }
                }
                // Path segments: ids of jobs, dead letters, groups and operations.
                let segments = Self.hostile.filter { !$0.isEmpty }.map(Self.encoded) + Self.rawEscapes
                for template in [
                    "/jobs/*", "/dead-letters/*", "/failures/*", "/operations/*", "/dead-letters/*/replay",
                    "/api/jobs/*",
                    "/api/dead-letters/*", "/api/operations/*",
                ] {
                    for segment in segments {
                        let target = template.replacingOccurrences(of: "*", with: segment)
                        let answer = await scene.request("GET", target, headers: scene.operatorAuth)
                        if !Self.acceptable(answer) {
                            failures.append("GET \(target.prefix(120)) → \(answer.status) \(answer.body.suffix(300))")
                        }
                    }
                }
                // Forms, signed in with a session (the CSRF token right), every field hostile in turn.
                let (cookie, csrf) = try await scene.session(from: "198.51.100.1")
                let form = [("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded")]
                let forms: [(String, [String])] = [
                    ("/operations", ["action", "group_id", "queue", "since_ms", "until_ms"]),
                    ("/dead-letters/m-1/replay", ["csrf_token"]),
                    ("/dead-letters/m-1/purge", ["unknown"]),
                    ("/sign-out", ["csrf_token"]),
                ]
                for (path, names) in forms {
                    for name in names {
                        for value in Self.hostile.map(Self.encoded) + Self.rawEscapes {
                            let body = (name == "csrf_token" ? "" : "csrf_token=\(csrf)&") + "\(name)=\(value)"
                            let answer = await scene.request(
                                "POST", path, headers: form, body: body, from: "198.51.100.1")
                            if !Self.acceptable(answer) {
                                failures.append(
                                    "POST \(path) \(name)=\(value.prefix(60)) → \(answer.status) \(answer.body.suffix(300))"
                                )
                            }
                        }
                    }
                }
                // The sign-in form's fields, from many clients (each within its own throttle).
                for (index, value) in (Self.hostile.map(Self.encoded) + Self.rawEscapes).enumerated() {
                    for name in ["user", "password", "next", "csrf_token"] {
                        let token = await scene.signInForm(from: "192.0.2.\(index)")
                        let fields = ["user": "grace", "password": "nope", "next": "/jobs", "csrf_token": token]
                            .merging([name: value]) { $1 }
                        let body = fields.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
                        let answer = await scene.request(
                            "POST", "/sign-in",
                            headers: [
                                ("Cookie", "warren_sign_in=\(token)"),
                                ("Content-Type", "application/x-www-form-urlencoded"),
                            ],
                            body: body, from: "192.0.2.\(index)")
                        if !Self.acceptable(answer) && answer.status != 401 {
                            failures.append("POST /sign-in \(name)=\(value.prefix(60)) → \(answer.status)")
                        }
                    }
                }
                // The API's JSON bodies.
                for body in [
                    "", "[]", "{}", "null", #"{"action": "replay", "filter": {"since_ms": 1e400}}"#,
                    #"{"action": "replay", "filter": {"since_ms": 99999999999999999999999}}"#,
                    #"{"action": "replay", "filter": {"queue": "\#(String(repeating: "q", count: 60_000))"}}"#,
                    #"{"action": "replay", "filter": {"group_id": "\u0000"}}"#, #"{"action": "explode"}"#,
                    String(repeating: "[", count: 50_000),
                    String(repeating: "x", count: 70_000),
                ] {
                    let answer = await scene.request(
                        "POST", "/api/operations", headers: scene.operatorAuth + [("Content-Type", "application/json")],
                        body: body)
                    if !Self.acceptable(answer) {
                        failures.append(
                            "POST /api/operations \(body.prefix(60)) → \(answer.status) \(answer.body.suffix(300))")
                    }
                }
                #expect(
                    failures.isEmpty,
                    "\(failures.count) answers outside 2xx/303/4xx:\n\(failures.prefix(10).joined(separator: "\n"))")
                #expect(
                    await scene.request("GET", "/api/jobs", headers: scene.operatorAuth).status == 200, "still serving")
            }
        }
    }
}
