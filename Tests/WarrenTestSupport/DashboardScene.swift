// A scene is made with the dashboard's password checks and guess throttle, which are internal to it: a testable
// import, which needs the module built for testing, as debug builds are (`swift build`, `swift test`). A release
// build of every target (`swift build -c release`) leaves the scene out rather than fail.
#if DEBUG
    import Foundation
    import Hummingbird
    import Logging
    import Warren
    import WarrenLedger

    @testable import WarrenDashboard

    /// The dashboard's schedule operations on an in-memory transport, whose scheduler is the real one.
    package struct InMemorySchedules: ScheduleOperations {
        package let transport: InMemoryTransport<ContinuousClock>
        package let scope: String?

        package init(transport: InMemoryTransport<ContinuousClock>, scope: String? = nil) {
            self.transport = transport
            self.scope = scope
        }

        package func directory() async throws -> ScheduleDirectory? { transport.scheduleDirectory(scope: scope) }

        package func trigger(_ stateName: String, requestID: String, requestedBy: String) async throws {
            try transport.triggerSchedule(stateName, requestID: requestID, requestedBy: requestedBy)
        }

        package func setPaused(_ paused: Bool, stateName: String) async throws {
            transport.setSchedulePaused(paused, schedule: stateName)
        }
    }

    /// The dashboard's routes served in this process on a free port over a fresh SQLite store: what a hostile client
    /// can reach, over plain HTTP (``RawHTTP`` sends bytes no URL type would).
    package struct DashboardScene {
        package static let operatorToken = "operator-" + UUID().uuidString  // 45 characters
        package static let viewerToken = "viewer-" + UUID().uuidString
        package static let adaPassword = "correct horse battery staple"
        package static let gracePassword = "grace's password"

        package let port: Int
        package let store: any LedgerStore
        package let logs: LogLines
        /// Where this dashboard checks passwords (by default one thread, four checks at most in flight).
        package let checks: PasswordChecks

        package var operatorAuth: [(String, String)] { [("Authorization", "Bearer \(Self.operatorToken)")] }
        package var viewerAuth: [(String, String)] { [("Authorization", "Bearer \(Self.viewerToken)")] }

        /// Serves a dashboard (users `ada`, operator, and `grace`, viewer; both tokens; `127.0.0.1` a trusted proxy, so
        /// that a test plays several clients with `X-Forwarded-For`) for the duration of `body`.
        package static func with<T>(
            _ kind: StoreKind = .sqlite, checks: PasswordChecks = PasswordChecks(threads: 1),
            guesses: GuessThrottle.Policy = GuessThrottle.Policy(),
            runner: @escaping @Sendable (any LedgerStore) -> DeadLetterOperationRunner? = { _ in nil },
            schedules: (any ScheduleOperations)? = nil,
            _ body: (DashboardScene) async throws -> T
        ) async throws -> T {
            try await withStore(kind) { store in
                try await store.migrate()
                let users = try DashboardUsers(
                    parsing: """
                        ada:operator:\(try PasswordHash.make(adaPassword, rounds: 100_000).encoded)
                        grace:viewer:\(try PasswordHash.make(gracePassword, rounds: 100_000).encoded)
                        """)
                let access = try DashboardAccess(
                    operatorToken: operatorToken, viewerToken: viewerToken, users: users, checks: checks)
                let router = Router(context: DashboardRequestContext.self)
                var dashboard = try Dashboard(
                    store: store, access: access, runner: runner(store), trustedProxies: ["127.0.0.1"],
                    guessPolicy: guesses)
                dashboard.schedules = schedules
                dashboard.addRoutes(to: router)
                let logs = LogLines()
                let logger = Logger(label: "dashboard-test") { _ in CapturingHandler(lines: logs) }
                let (ports, portsContinuation) = AsyncStream.makeStream(of: Int.self)
                let app = Application(
                    router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                    onServerRunning: { channel in portsContinuation.yield(channel.localAddress?.port ?? 0) },
                    logger: logger
                )
                return try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await app.run() }
                    var iterator = ports.makeAsyncIterator()
                    guard let port = await iterator.next() else { throw TestFailure("the dashboard did not start") }
                    defer { group.cancelAll() }
                    return try await body(DashboardScene(port: port, store: store, logs: logs, checks: checks))
                }
            }
        }

        package func request(
            _ method: String, _ target: String, headers: [(String, String)] = [], body: String = "",
            from client: String? = nil
        ) async -> RawHTTP.Answer {
            await RawHTTP.request(
                port: port, method, target, headers: headers + (client.map { [("X-Forwarded-For", $0)] } ?? []),
                body: body)
        }

        /// A sign-in form's cookie and token, as a browser gets them.
        package func signInForm(from client: String? = nil) async -> String {
            let form = await request("GET", "/sign-in", from: client)
            let cookie = form.cookies.first { $0.hasPrefix("warren_sign_in=") } ?? ""
            return String(cookie.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last ?? "")
        }

        /// Posts the sign-in form (with its cookie and token) for `user`.
        package func signIn(
            _ user: String, _ password: String, next: String = "/jobs", from client: String? = nil, token: String? = nil
        ) async -> RawHTTP.Answer {
            let csrf: String
            if let token { csrf = token } else { csrf = await signInForm(from: client) }
            func encode(_ text: String) -> String {
                text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            }
            return await request(
                "POST", "/sign-in",
                headers: [("Cookie", "warren_sign_in=\(csrf)"), ("Content-Type", "application/x-www-form-urlencoded")],
                body: "user=\(encode(user))&password=\(encode(password))&next=\(encode(next))&csrf_token=\(csrf)",
                from: client)
        }

        /// A session cookie and its CSRF token, signed in as `user` (`ada`, the operator, unless told) from `client`.
        package func session(from client: String, as user: String = "ada", password: String = adaPassword) async throws
            -> (
                cookie: String, csrf: String
            )
        {
            let signedIn = await signIn(user, password, from: client)
            guard signedIn.status == 303,
                let cookie = signedIn.cookies.first(where: { $0.hasPrefix("warren_session=") })?.split(separator: ";")
                    .first
                    .map(String.init)
            else { throw TestFailure("\(user) could not sign in: \(signedIn.status) \(signedIn.body)") }
            let page = await request("GET", "/jobs", headers: [("Cookie", cookie)], from: client)
            guard let range = page.body.range(of: #"name="csrf_token" value=""#),
                let end = page.body[range.upperBound...].firstIndex(of: "\"")
            else { throw TestFailure("no CSRF token on the jobs page") }
            return (cookie, String(page.body[range.upperBound..<end]))
        }
    }
#endif
