import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenHTTP
import WarrenLedger

/// The dashboard: server-rendered pages over a ledger store (no JavaScript, no front-end build) and the same data as
/// JSON under `/api/` (``LedgerAPI``), all behind ``DashboardAccess``.
///
/// Pages: `/jobs` (search by message id, type, queue, status and time), `/jobs/{message_id}` (a job and its attempts),
/// `/failures` (dead letters grouped by failure), `/failures/{group_id}` (a group's dead letters),
/// `/dead-letters/{message_id}` (headers and body, escaped; binary bodies as hex), `/queues` (each work queue's depth,
/// consumers, delay queues, redelivered and dead-letter queues; rates when the management API is reachable; JSON at
/// `/api/queues`). Signing in: `/sign-in` (a form;
/// a user of the users file, or an empty name and a token as the password) gives a session cookie (`HttpOnly`,
/// `SameSite=Strict`); every form that changes something carries the session's CSRF token.
///
/// Text that comes from messages (types, errors, headers, bodies, even message ids) is escaped wherever it appears,
/// and every page is sent with a `Content-Security-Policy` that allows no script at all.
public struct Dashboard: Sendable {
    public let store: any LedgerStore
    public let access: DashboardAccess
    /// Whether the session cookie is marked `Secure` (set it when the dashboard is served over HTTPS, e.g. behind a
    /// proxy that terminates TLS).
    public var secureCookies: Bool
    /// Asks the broker about queues for the queues page; `nil`: the page says no broker is configured.
    public var inspector: (any QueueInspector)?
    /// Work queues the queues page shows besides those the ledger has jobs of.
    public var watchedQueues: [String]
    /// Replays and purges dead letters still in their queues for operators; `nil`: off (no broker).
    public var queueActions: (any DeadLetterQueueActions)?
    /// Replays and purges the dead letters the ledger holds (``DeadLetterIntake``), one or in bulk, as durable
    /// operations; `nil`: off (no broker, or the dead letters stay in their queues).
    public var runner: DeadLetterOperationRunner?
    let sessions: DashboardSessions
    /// Failed sign-ins and bearer tokens, per client and per user name.
    let guesses: GuessThrottle
    let clients: ClientAddresses
    /// Refused replays and purges written to the audit log, per user (a viewer looping them must not fill it).
    let refusals: RefusalLimiter

    /// - Parameters:
    ///   - trustedProxies: the addresses of the proxies in front of the dashboard (TLS terminators) whose
    ///     `X-Forwarded-For` names the client that sign-in and token throttling count against; from anyone else the
    ///     header is ignored.
    /// - Throws: ``DashboardConfigurationError`` for a trusted proxy that is not an IP address.
    public init(
        store: any LedgerStore, access: DashboardAccess, inspector: (any QueueInspector)? = nil, queueActions: (any DeadLetterQueueActions)? = nil,
        runner: DeadLetterOperationRunner? = nil, watchedQueues: [String] = [], secureCookies: Bool = false, trustedProxies: [String] = []
    ) throws {
        try self.init(
            store: store, access: access, inspector: inspector, queueActions: queueActions, runner: runner, watchedQueues: watchedQueues,
            secureCookies: secureCookies, trustedProxies: trustedProxies, guessPolicy: GuessThrottle.Policy())
    }

    init(
        store: any LedgerStore, access: DashboardAccess, inspector: (any QueueInspector)? = nil, queueActions: (any DeadLetterQueueActions)? = nil,
        runner: DeadLetterOperationRunner? = nil, watchedQueues: [String] = [], secureCookies: Bool = false, trustedProxies: [String] = [],
        guessPolicy: GuessThrottle.Policy
    ) throws {
        self.clients = try ClientAddresses(trustedProxies: trustedProxies)
        self.guesses = GuessThrottle(guessPolicy)
        self.refusals = RefusalLimiter()
        self.store = store
        self.runner = runner
        self.access = access
        self.inspector = inspector
        self.queueActions = queueActions
        self.watchedQueues = watchedQueues
        self.secureCookies = secureCookies
        self.sessions = DashboardSessions()
    }

    /// Adds the pages, the sign-in form and the API (under `api/`) to `router`.
    public func addRoutes(to router: Router<DashboardRequestContext>) {
        router.add(middleware: RefuseNULMiddleware())
        router.get("assets/dashboard.css") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "max-age=3600"],
                body: .init(byteBuffer: ByteBuffer(string: Self.stylesheet)))
        }
        router.get("sign-in") { request, _ in signInForm(next: request.uri.queryParameters["next"].map(String.init), failed: false) }
        router.post("sign-in") { request, context in try await signIn(request, context) }

        let signedIn = router.group().add(
            middleware: DashboardAccessMiddleware(access: access, sessions: sessions, guesses: guesses, clients: clients))
        signedIn.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/jobs"]) }
        signedIn.post("sign-out") { request, context in try await signOut(request, context) }
        signedIn.get("jobs") { request, context in try await jobsPage(request, context) }
        signedIn.get("jobs/:message_id") { _, context in try await jobPage(context) }
        signedIn.get("failures") { request, context in try await failuresPage(request, context) }
        signedIn.get("failures/:group_id") { request, context in try await groupPage(request, context) }
        signedIn.get("dead-letters/:message_id") { _, context in try await deadLetterPage(context) }
        signedIn.get("queues") { _, context in try await queuesPage(context) }
        for action in [DeadLetterAction.replay, .purge] {
            signedIn.get("dead-letters/:message_id/\(action.rawValue)") { _, context in try await confirmation(action, context) }
            signedIn.post("dead-letters/:message_id/\(action.rawValue)") { request, context in try await runFromPage(action, request, context) }
        }
        signedIn.get("audit") { request, context in try await auditPage(request, context) }
        addOperationRoutes(pages: signedIn)
        let api = signedIn.group("api")
        LedgerAPI(store: store).addRoutes(to: api)
        api.get("queues") { _, _ in try JSONResponse.make(["queues": try await queueOverviews()]) }
        for action in [DeadLetterAction.replay, .purge] {
            api.post("dead-letters/:message_id/\(action.rawValue)") { request, context in try await runFromAPI(action, request, context) }
        }
        addOperationRoutes(api: api)
        api.get("audit") { request, _ in
            try await LedgerAPI.answer(request, parse: { try LedgerAPI.listQuery(from: $0, known: ["limit", "before"]) }) { list in
                ["entries": try await store.auditLog(limit: list.limit, before: list.before)]
            }
        }
    }

    // MARK: Signing in and out

    private static let signInCookie = "warren_sign_in"

    /// The form, with a fresh token in a cookie and in the form: a sign-in posted from another site lacks the cookie.
    private func signInForm(next: String?, failed: Bool) -> Response {
        let token = ConstantTime.randomToken()
        let content: HTML = """
            <main class="sign-in">
            <h1>Warren</h1>
            \(failed ? HTML("<p class=\"error\" role=\"alert\">That name and password (or token) did not match.</p>") : .empty)
            <form method="post" action="/sign-in">
            <input type="hidden" name="csrf_token" value="\(token)">
            <input type="hidden" name="next" value="\(Self.localPath(next) ?? "/jobs")">
            <label for="user">User <span class="hint">(empty to sign in with a token)</span></label>
            <input id="user" name="user" autocomplete="username" autofocus>
            <label for="password">Password or token</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required>
            <button type="submit">Sign in</button>
            </form>
            </main>
            """
        let cookie = Cookie(name: Self.signInCookie, value: token, maxAge: 3_600, path: "/sign-in", secure: secureCookies, httpOnly: true, sameSite: .strict)
        return Self.document(title: "Sign in", content: content)
            .response(status: failed ? .unauthorized : .ok, headers: [.setCookie: cookie.description])
    }

    private struct SignInForm: Decodable {
        var user: String?
        var password: String?
        var next: String?
        var csrfToken: String?
        enum CodingKeys: String, CodingKey { case user, password, next, csrfToken = "csrf_token" }
    }

    private func signIn(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let form = try await Self.form(SignInForm.self, request)
        guard let expected = request.cookies[Self.signInCookie]?.value, let sent = form.csrfToken,
            ConstantTime.equal(Array(sent.utf8), Array(expected.utf8))
        else {
            return Self.problem(.forbidden, "This sign-in form has expired or came from elsewhere.", link: "/sign-in")
        }
        let name = form.user ?? ""
        let client = clients.client(of: request, context)
        // A name longer than any user's is refused unchecked; it is not remembered either.
        let throttledName = name.isEmpty || name.utf8.count > DashboardAccess.maximumNameLength ? nil : name
        // What the log says of the name: a user's name, or only its length (an unknown name may be a password or a
        // token typed in the wrong field, and it must not forge log lines).
        let loggedName: Logger.Metadata = access.isUser(name) ? ["user": "\(name)"] : ["user_length": "\(name.utf8.count)"]
        if let wait = await guesses.reserve(client: client, name: throttledName) {
            context.logger.notice("dashboard sign-in throttled", metadata: loggedName.merging(["client": "\(client)"]) { $1 })
            return Self.tooManyGuesses(wait)
        }
        let identity: DashboardIdentity
        switch await access.signIn(name: name, password: form.password ?? "") {
        case .busy:
            await guesses.release(client: client, name: throttledName)
            context.logger.warning("dashboard sign-in refused unchecked: too many password checks under way", metadata: ["client": "\(client)"])
            return Self.problem(
                .serviceUnavailable, "Too many sign-ins are being checked right now: try again in a few seconds.", link: "/sign-in",
                headers: [.retryAfter: "2"])
        case .refused:
            context.logger.notice("dashboard sign-in refused", metadata: loggedName.merging(["client": "\(client)"]) { $1 })
            return signInForm(next: form.next, failed: true)
        case .signedIn(let signedIn):
            await guesses.succeeded(client: client, name: throttledName)
            identity = signedIn
        }
        let session = await sessions.open(for: identity)
        context.logger.info("dashboard sign-in", metadata: ["user": "\(identity.name)", "role": "\(identity.role.rawValue)"])
        var headers: HTTPFields = [.location: Self.localPath(form.next) ?? "/jobs"]
        headers.append(.init(name: .setCookie, value: sessionCookie(session.id, maxAge: Int(sessions.lifetime.components.seconds)).description))
        headers.append(.init(name: .setCookie, value: Cookie(name: Self.signInCookie, value: "", maxAge: 0, path: "/sign-in").description))
        return Response(status: .seeOther, headers: headers)
    }

    private struct CSRFForm: Decodable {
        var csrfToken: String?
        enum CodingKeys: String, CodingKey { case csrfToken = "csrf_token" }
    }

    private func signOut(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        if let refusal = try await Self.refuseWithoutCSRF(request, context) { return refusal }
        if let session = context.session { await sessions.close(id: session.id) }
        return Response(
            status: .seeOther, headers: [.location: "/sign-in", .setCookie: sessionCookie("", maxAge: 0).description])
    }

    private func sessionCookie(_ value: String, maxAge: Int) -> Cookie {
        Cookie(name: DashboardSessions.cookieName, value: value, maxAge: maxAge, path: "/", secure: secureCookies, httpOnly: true, sameSite: .strict)
    }

    /// A 403 page when a request that came with a session cookie lacks its CSRF token; `nil` when it may go on
    /// (right token, or a bearer token, which a browser never adds by itself).
    static func refuseWithoutCSRF(_ request: Request, _ context: DashboardRequestContext) async throws -> Response? {
        guard context.session != nil else { return nil }
        return refuseWithoutCSRF(sent: try await form(CSRFForm.self, request).csrfToken, request, context)
    }

    /// As ``refuseWithoutCSRF(_:_:)`` for a form already read (a body is read once): `sent` is its `csrf_token`.
    static func refuseWithoutCSRF(sent: String?, _ request: Request, _ context: DashboardRequestContext) -> Response? {
        guard let session = context.session else { return nil }
        let sent = sent ?? request.headers[HTTPField.Name("X-CSRF-Token")!]
        guard let sent, ConstantTime.equal(Array(sent.utf8), Array(session.csrfToken.utf8)) else {
            return problem(.forbidden, "This form has expired or came from elsewhere: reload the page and try again.", link: "/jobs")
        }
        return nil
    }

    /// An URL-encoded form body (at most 64 KiB).
    /// - Throws: `HTTPError` 400 with a sentence when the body is not such a form (a number that is not one, a field
    ///   given twice); 413 when it is larger.
    static func form<Form: Decodable>(_ type: Form.Type, _ request: Request) async throws -> Form {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024)
        do {
            return try URLEncodedFormDecoder().decode(Form.self, from: String(buffer: body))
        } catch {
            throw HTTPError(.badRequest, message: "The form's fields could not be read: send it again from the page.")
        }
    }

    /// `path` when it is a path on this server, so a sign-in never sends anyone elsewhere: it starts with one `/`, and
    /// holds printable ASCII only, no backslash (browsers drop tabs and newlines, and read `\` as `/`, so `/<TAB>/evil`
    /// and `/\evil` would lead to another host).
    static func localPath(_ path: String?) -> String? {
        guard let path, path.utf8.count <= 2_048, path.hasPrefix("/"), !path.hasPrefix("//"),
            path.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "\\") })
        else { return nil }
        return path
    }

    /// 429 with `Retry-After` for a client that failed too often.
    static func tooManyGuesses(_ wait: Duration) -> Response {
        let seconds = max(1, wait.components.seconds + (wait.components.attoseconds > 0 ? 1 : 0))
        let when = seconds < 90 ? "\(seconds) seconds" : "\((seconds + 59) / 60) minutes"
        return problem(
            .tooManyRequests, "Too many failed sign-ins from here: try again in \(when).", link: "/sign-in",
            headers: [.retryAfter: "\(seconds)"])
    }

    // MARK: Pages

    private func jobsPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let parameters = request.uri.queryParameters.map { (String($0.key), String($0.value)) }
        if let id = parameters.last(where: { $0.0 == "id" })?.1.trimmingCharacters(in: .whitespaces), !id.isEmpty {
            return Response(status: .seeOther, headers: [.location: "/jobs/\(Link.encode(id))"])
        }
        let filters = parameters.filter { $0.0 != "id" }
        func value(_ name: String) -> String { filters.last(where: { $0.0 == name })?.1 ?? "" }
        let query: JobQuery
        do {
            query = try LedgerAPI.query(from: filters)
        } catch let error as LedgerAPI.BadRequest {
            return page("Jobs", context, nav: "jobs", status: .badRequest, content: jobSearchForm(value) + Self.errorNote(error.message))
        }
        let found = try await store.jobs(matching: query)
        let rows = found.jobs.map { job -> HTML in
            """
            <tr><td><a href="\(Link.to("/jobs/\(Link.encode(job.messageID))"))"><code>\(job.messageID)</code></a></td>\
            <td>\(job.type)</td><td>\(job.queue)</td><td>\(Self.badge(job.state))</td><td class="number">\(job.attempts)</td>\
            <td>\(Format.time(job.publishedAtMs))</td><td>\(Format.time(job.updatedAtMs))</td>\
            <td class="error-text">\(job.lastError ?? job.reason ?? "")</td></tr>
            """
        }
        let table = Self.table(
            "Jobs, most recent first", ["Message id", "Type", "Queue", "Status", "Attempts", "Published", "Last event", "Last error"],
            rows: rows, empty: "No job matches.")
        return page("Jobs", context, nav: "jobs", content: jobSearchForm(value) + table + Self.nextPage("/jobs", filters, after: found.next))
    }

    private func jobSearchForm(_ value: (String) -> String) -> HTML {
        let options = [HTML("<option value=\"\">any</option>")] + JobState.all.map { state in
            "<option value=\"\(state.rawValue)\"\(value("status") == state.rawValue ? HTML(" selected") : .empty)>\(state.rawValue)</option>"
        }
        return """
            <h1>Jobs</h1>
            <form class="search" method="get" action="/jobs" role="search">
            <div><label for="id">Message id</label><input id="id" name="id"></div>
            <div><label for="type">Type</label><input id="type" name="type" value="\(value("type"))"></div>
            <div><label for="queue">Queue</label><input id="queue" name="queue" value="\(value("queue"))"></div>
            <div><label for="status">Status</label><select id="status" name="status">\(options)</select></div>
            <div><label for="since">Since <span class="hint">(24h, 7d or a time)</span></label><input id="since" name="since" value="\(value("since"))"></div>
            <div><label for="until">Until</label><input id="until" name="until" value="\(value("until"))"></div>
            <div><button type="submit">Search</button></div>
            </form>
            """
    }

    private func jobPage(_ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        guard let job = try await store.job(messageID: id) else {
            return page("Job not found", context, nav: "jobs", status: .notFound, content: """
                <h1>Job not found</h1><p>The ledger has no job with message id <code>\(id)</code> (or it has been pruned).</p>
                """)
        }
        let attempts = job.timeline.map { attempt -> HTML in
            """
            <tr><td class="number">\(attempt.attempt)</td><td>\(Format.time(attempt.startedAtMs))</td><td>\(Format.time(attempt.endedAtMs))</td>\
            <td class="nowrap">\(Format.queueWait(milliseconds: attempt.queueWaitMs, approximateSeconds: attempt.queueWaitApproxS))</td><td class="nowrap">\(Format.duration(attempt.durationMs))</td>\
            <td>\(attempt.outcome.map { HTML("<span class=\"badge \($0)\">\($0)</span>") } ?? .empty)</td><td class="nowrap">\(attempt.host)</td>\
            <td class="error-text">\(attempt.error)</td></tr>
            """
        }
        // Any job that was ever dead-lettered (a replayed one that then succeeded too) links to its dead letters.
        let deadLetters: HTML = job.timeline.contains(where: { $0.outcome == WarrenEvent.Kind.deadLetter.rawValue })
            ? "<p><a href=\"/dead-letters/\(Link.encode(id))\">Its dead letters: headers and body →</a></p>" : .empty
        let content: HTML = """
            <h1>Job <code>\(job.messageID)</code></h1>
            <dl class="facts">
            <dt>Status</dt><dd>\(Self.badge(job.state))</dd>
            <dt>Type</dt><dd>\(job.type)</dd>
            <dt>Queue</dt><dd><a href="\(Link.to("/jobs", [("queue", job.queue)]))">\(job.queue)</a></dd>
            <dt>Attempts</dt><dd>\(job.attempts)</dd>
            <dt>Published</dt><dd>\(Format.time(job.publishedAtMs))</dd>
            <dt>Last event</dt><dd>\(Format.time(job.updatedAtMs))</dd>
            \(job.nextAttemptAtMs.map { HTML("<dt>Next attempt</dt><dd>\(Format.time($0))</dd>") } ?? .empty)
            \(job.reason.map { HTML("<dt>Reason</dt><dd>\($0)</dd>") } ?? .empty)
            \(job.lastError.map { HTML("<dt>Last error</dt><dd class=\"error-text\">\($0)</dd>") } ?? .empty)
            \(job.traceID.map { HTML("<dt>Trace id</dt><dd><code>\($0)</code></dd>") } ?? .empty)
            </dl>
            \(deadLetters)
            <h2>Attempts</h2>
            \(Self.table("The job's attempts, first to last", ["#", "Started", "Ended", "Waited", "Took", "Outcome", "Host", "Error"], rows: attempts))
            """
        return page("Job \(job.messageID)", context, nav: "jobs", content: content)
    }

    private func failuresPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let parameters = request.uri.queryParameters.map { (String($0.key), String($0.value)) }
        func value(_ name: String) -> String { parameters.last(where: { $0.0 == name })?.1 ?? "" }
        let form: HTML = """
            <h1>Failures</h1>
            <p class="lead">Dead letters grouped by cause: type, reason, and the error with its numbers and ids masked.</p>
            <form class="search" method="get" action="/failures" role="search">
            <div><label for="queue">Queue</label><input id="queue" name="queue" value="\(value("queue"))"></div>
            <div><label for="since">Since <span class="hint">(24h, 7d or a time)</span></label><input id="since" name="since" value="\(value("since"))"></div>
            <div><label for="until">Until</label><input id="until" name="until" value="\(value("until"))"></div>
            <div><button type="submit">Show</button></div>
            </form>
            """
        let query: FailureGroupQuery
        do {
            query = try LedgerAPI.failureQuery(from: parameters)
        } catch let error as LedgerAPI.BadRequest {
            return page("Failures", context, nav: "failures", status: .badRequest, content: form + Self.errorNote(error.message))
        }
        let groups = try await store.failureGroups(matching: query)
        let rows = groups.map { group -> HTML in
            let groupLink = Link.to("/failures/\(Link.encode(group.groupID))", Self.keep(parameters, only: ["queue", "since", "until"]))
            return """
                <tr><td class="number"><a href="\(groupLink)">\(group.count)</a></td><td>\(group.type)</td><td>\(group.reason)</td>\
                <td class="error-text"><a href="\(groupLink)">\(group.error.isEmpty ? "(no error text)" : group.error)</a></td>\
                <td>\(Format.time(group.firstAtMs))</td><td>\(Format.time(group.lastAtMs))</td>\
                <td><a href="/dead-letters/\(Link.encode(group.sampleMessageID))"><code>\(group.sampleMessageID)</code></a></td></tr>
                """
        }
        let table = Self.table(
            "Failure groups, most recently seen first", ["Dead letters", "Type", "Reason", "Error", "First seen", "Last seen", "Sample"],
            rows: rows, empty: "No dead letters in this range.")
        let actions = try await bulkActions(
            DeadLetterFilter(queue: query.queue, sinceMs: query.sinceMs, untilMs: query.untilMs),
            confirm: { Link.to("/operations/new", [("action", $0.rawValue)] + Self.keep(parameters, only: ["queue", "since", "until"])) }, context,
            describe: { "\($0) dead letters of this search wait in the ledger." })
        return page("Failures", context, nav: "failures", content: form + actions + table)
    }

    private func groupPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let group = try context.parameters.require("group_id")
        let parameters = request.uri.queryParameters.map { (String($0.key), String($0.value)) }.filter { $0.0 != "group" }
        let query: DeadLetterQuery
        do {
            query = try LedgerAPI.deadLetterQuery(from: parameters + [("group", group)])
        } catch let error as LedgerAPI.BadRequest {
            return page("Failure group", context, nav: "failures", status: .badRequest, content: Self.errorNote(error.message))
        }
        let found = try await store.deadLetters(matching: query)
        guard let first = found.deadLetters.first else {
            return page("Failure group", context, nav: "failures", status: query.after == nil ? .notFound : .ok, content: """
                <h1>Failure group <code>\(group)</code></h1><p class="empty">No dead letters of this group in this range.</p>
                """)
        }
        let fingerprint = FailureFingerprint(type: first.type, reason: first.reason, error: first.error)
        let rows = found.deadLetters.map { letter -> HTML in
            """
            <tr><td>\(Format.time(letter.atMs))</td><td><a href="/dead-letters/\(Link.encode(letter.messageID))"><code>\(letter.messageID)</code></a></td>\
            <td>\(letter.queue)</td><td class="error-text">\(letter.error)</td><td>\(Self.whereNow(letter))</td></tr>
            """
        }
        let content: HTML = """
            <h1>Failure group <code>\(group)</code></h1>
            <dl class="facts">
            <dt>Type</dt><dd>\(first.type)</dd><dt>Reason</dt><dd>\(first.reason)</dd>
            <dt>Error</dt><dd class="error-text">\(fingerprint.maskedError)</dd>
            </dl>
            \(try await bulkActions(
                DeadLetterFilter(groupID: group), confirm: { "/failures/\(Link.encode(group))/\($0.rawValue)" }, context,
                describe: { "\($0) of them wait in the ledger." }, none: "<p class=\"hint\">None of this group's dead letters waits in the ledger.</p>"))
            \(Self.table("The group's dead letters, most recent first", ["Dead-lettered", "Message id", "Queue", "Error", "Now"], rows: rows))
            \(Self.nextPage("/failures/\(Link.encode(group))", parameters, after: found.next))
            """
        return page("Failure group", context, nav: "failures", content: content)
    }

    /// At most this much of a body is shown on a page.
    static let bodyDisplayLimit = 256 * 1024

    private func deadLetterPage(_ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        let letters = try await store.deadLetters(messageID: id)
        guard !letters.isEmpty else {
            return page("Dead letter not found", context, nav: "failures", status: .notFound, content: """
                <h1>Dead letter not found</h1><p>The ledger has no dead letter with message id <code>\(id)</code>.</p>
                """)
        }
        let sections = letters.map { letter -> HTML in
            let headers = (letter.headers ?? [:]).sorted(by: { $0.key < $1.key }).map { name, value -> HTML in
                "<tr><th scope=\"row\"><code>\(name)</code></th><td><code>\(value)</code></td></tr>"
            }
            return """
                <section class="dead-letter">
                <h2>Dead-lettered \(Format.time(letter.atMs))</h2>
                <dl class="facts">
                <dt>Queue</dt><dd>\(letter.queue)</dd><dt>Type</dt><dd>\(letter.type)</dd><dt>Reason</dt><dd>\(letter.reason)</dd>
                <dt>Now</dt><dd>\(Self.whereNow(letter))</dd>
                <dt>Error</dt><dd class="error-text">\(letter.error)</dd>
                \(letter.groupID.map { HTML("<dt>Failure group</dt><dd><a href=\"/failures/\(Link.encode($0))\"><code>\($0)</code></a></dd>") } ?? .empty)
                </dl>
                <h3>Headers</h3>
                \(headers.isEmpty ? HTML("<p class=\"empty\">None.</p>") : "<table class=\"headers\"><tbody>\(headers)</tbody></table>")
                <h3>Body</h3>
                \(Self.body(of: letter))
                </section>
                """
        }
        let replay: HTML = context.identity?.role == .operator && (queueActions != nil || runner != nil)
            ? """
            <p class="actions"><a class="button" href="/dead-letters/\(Link.encode(id))/replay">Replay…</a> \
            <a class="button danger" href="/dead-letters/\(Link.encode(id))/purge">Purge…</a></p>
            """ : .empty
        let content: HTML = """
            <h1>Dead letter <code>\(id)</code></h1>
            <p><a href="/jobs/\(Link.encode(id))">The job's attempts →</a></p>
            \(replay)
            \(sections)
            """
        return page("Dead letter \(id)", context, nav: "failures", content: content)
    }

    /// Where a dead letter is now: held by the ledger, replayed or purged by an operation, or in its queue.
    static func whereNow(_ letter: DeadLetterRecord) -> HTML {
        if letter.held { return "in the ledger" }
        if let settled = letter.settled {
            return "\(settled) by \(letter.settledBy.map { HTML("<a href=\"/operations/\(Link.encode($0))\"><code>\($0)</code></a>") } ?? .empty)"
        }
        return "in \(WarrenTopology(queue: letter.queue).deadLetterQueue), or gone from it"
    }

    /// A body as text when it is UTF-8, as a hex dump when it is binary; never more than ``bodyDisplayLimit``.
    static func body(of letter: DeadLetterRecord) -> HTML {
        guard let body = letter.body else { return "<p class=\"empty\">Not recorded (the worker's event options leave bodies out).</p>" }
        let truncated: HTML = letter.bodyTruncated == true ? "<p class=\"hint\">The event carried only the start of the body.</p>" : .empty
        if letter.bodyEncoding == "base64" {
            // Only what is shown is decoded: the length of the rest is known from the text's.
            let padding = body.utf8.suffix(2).filter { $0 == UInt8(ascii: "=") }.count
            let total = max(0, body.utf8.count / 4 * 3 - padding)
            let shown = Array((Data(base64Encoded: String(decoding: body.utf8.prefix((bodyDisplayLimit + 2) / 3 * 4), as: UTF8.self)) ?? Data()).prefix(bodyDisplayLimit))
            let cut: HTML = shown.count < total ? "<p class=\"hint\">The first \(shown.count) of \(total) bytes.</p>" : .empty
            return "<p class=\"hint\">Binary, \(total) bytes, as hex:</p><pre class=\"body hex\">\(Format.hexDump(shown))</pre>\(cut)\(truncated)"
        }
        let shown = String(decoding: body.utf8.prefix(bodyDisplayLimit), as: UTF8.self)
        let cut: HTML = shown.utf8.count < body.utf8.count ? "<p class=\"hint\">The first \(shown.utf8.count) of \(body.utf8.count) bytes.</p>" : .empty
        return "<pre class=\"body\">\(shown)</pre>\(cut)\(truncated)"
    }

    /// The ledger's queues and the watched ones, as the inspector reports them (empty without an inspector).
    func queueOverviews() async throws -> [QueueOverview] {
        guard let inspector else { return [] }
        let names = Set(try await store.queues()).union(watchedQueues).sorted()
        return await inspector.inspect(names)
    }

    private func queuesPage(_ context: DashboardRequestContext) async throws -> Response {
        guard inspector != nil else {
            return page("Queues", context, nav: "queues", content: """
                <h1>Queues</h1><p class="empty">No broker to ask: this dashboard runs with --no-ingest and no --url.</p>
                """)
        }
        let overviews = try await queueOverviews()
        func count(_ value: Int?) -> HTML { value.map { "\($0)" } ?? "<span class=\"hint\">missing</span>" }
        func rate(_ value: Double?) -> String { value.map { String(format: "%.1f/s", $0) } ?? "" }
        let rows = overviews.map { overview -> HTML in
            if let problem = overview.problem {
                return "<tr><th scope=\"row\">\(overview.queue)</th><td colspan=\"8\" class=\"error-text\">\(problem)</td></tr>"
            }
            let work = overview.queues.first { $0.role == "work" }
            let delays = overview.queues.filter { $0.role == "delay" && $0.exists }
            let delayText = delays.isEmpty ? "" : "\(overview.depth("delay") ?? 0) in \(delays.count) (\(delays.compactMap { $0.delayMilliseconds.map { Format.duration($0) } }.joined(separator: ", ")))"
            let deadLetters = overview.depth("dead-letters")
            return """
                <tr><th scope="row"><a href="\(Link.to("/jobs", [("queue", overview.queue)]))">\(overview.queue)</a></th>\
                <td class="number">\(count(work?.exists == true ? work?.messages : nil))</td><td class="number">\(overview.rates.map { "\($0.unacked)" } ?? "")</td>\
                <td class="number">\(work?.exists == true ? "\(work?.consumers ?? 0)" : "")</td><td>\(delayText)</td><td class="number">\(count(overview.depth("redelivered")))</td>\
                <td class="number">\(deadLetters.map { HTML("<a href=\"\(Link.to("/failures", [("queue", overview.queue)]))\">\($0)</a>") } ?? count(nil))</td>\
                <td class="number">\(rate(overview.rates?.publishedPerSecond))</td><td class="number">\(rate(overview.rates?.ackedPerSecond))</td></tr>
                """
        }
        let table = Self.table(
            "Work queues", ["Queue", "Ready", "Unacked", "Consumers", "Waiting to retry", "Redelivered", "Dead letters", "Published", "Acked"],
            numeric: ["Ready", "Unacked", "Consumers", "Redelivered", "Dead letters", "Published", "Acked"], rows: rows,
            empty: "No queues yet: the ledger has no jobs, and none is watched (--queue).")
        let source: HTML = overviews.contains(where: { $0.rates != nil })
            ? "<p class=\"hint\">Depths from AMQP; unacked counts and rates from the management API.</p>"
            : "<p class=\"hint\">Depths from AMQP (passive declares). Unacked counts and rates need the management API (--management-url).</p>"
        return page("Queues", context, nav: "queues", content: "<h1>Queues</h1>" + table + source)
    }

    // MARK: Replays and purges

    /// What an operator may do to a dead letter.
    typealias DeadLetterAction = DeadLetterOperation.Action

    /// The outcome of a request, recorded in the audit log whatever it was.
    private enum ActionOutcome {
        case done(Int, requestID: String)
        case refused(HTTPResponse.Status, String)
    }

    /// Replays or purges a job's dead letters for `identity`, and writes the attempt to the audit log.
    private func run(_ action: DeadLetterAction, _ messageID: String, as identity: DashboardIdentity?, logger: Logger) async throws -> ActionOutcome {
        if let refusal = await refuseRepeatedRefusals(of: identity) { return .refused(refusal.status, refusal.message) }
        let requestID = "dashboard-\(UUID().uuidString.lowercased())"
        let outcome: ActionOutcome
        let queue = try await store.deadLetters(messageID: messageID).first?.queue
        let filter = DeadLetterFilter(messageID: messageID)
        if identity?.role != .operator {
            outcome = .refused(.forbidden, "Only an operator may \(action.rawValue): \(identity?.name ?? "this sign-in") is a viewer.")
        } else if let runner, try await store.countHeldDeadLetters(matching: filter) > 0 {
            do {
                let started = try await runner.start(
                    action, filter: filter, actor: identity?.name ?? "", role: identity?.role.rawValue ?? "", id: requestID)
                let ended = try await runner.execute(started.id)
                outcome = switch ended?.status {
                case .done?: .done(ended?.settled ?? 0, requestID: requestID)
                default: .refused(.badGateway, "The \(action.rawValue) did not finish: \(ended?.error ?? "see the operation \(requestID)").")
                }
            } catch {
                logger.warning("dead-letter \(action.rawValue) failed", metadata: ["message_id": "\(messageID)", "error": "\(error)"])
                outcome = .refused(.badGateway, "The broker did not take the \(action.rawValue): \(error)")
            }
        } else if let queueActions {
            if let queue {
                do {
                    let count = switch action {
                    case .replay: try await queueActions.replay(messageID: messageID, queue: queue, replayID: requestID)
                    case .purge: try await queueActions.purge(messageID: messageID, queue: queue)
                    }
                    outcome = count > 0
                        ? .done(count, requestID: requestID)
                        : .refused(.notFound, "No dead letter with this message id is left in \(WarrenTopology(queue: queue).deadLetterQueue): replayed or purged already.")
                } catch {
                    logger.warning("dead-letter \(action.rawValue) failed", metadata: ["message_id": "\(messageID)", "error": "\(error)"])
                    outcome = .refused(.badGateway, "The broker did not take the \(action.rawValue): \(error)")
                }
            } else {
                outcome = .refused(.notFound, "The ledger has no dead letter with this message id.")
            }
        } else {
            outcome = .refused(.serviceUnavailable, "This needs a broker: this dashboard runs without one.")
        }
        let (count, result): (Int, String) = switch outcome {
        case .done(let count, _): (count, "done")
        case .refused(let status, let why): (0, Self.auditOutcome(status, why))
        }
        try await audit(
            action, target: "message \(messageID)\(queue.map { " from \($0)" } ?? "")", count: count, outcome: result, requestID: requestID,
            by: identity, logger: logger)
        return outcome
    }

    /// A refusal as the audit log says it: `refused` (a viewer), or `failed: <why>`.
    static func auditOutcome(_ status: HTTPResponse.Status, _ why: String) -> String {
        status == .forbidden ? "refused" : "failed: \(why)"
    }

    /// A 429 for a viewer who had more than ``RefusalLimiter/limit`` requests refused within its window (each refusal
    /// is written to the audit log, which a loop must not fill); `nil` for an operator, or within the limit.
    func refuseRepeatedRefusals(of identity: DashboardIdentity?) async -> Refusal? {
        guard identity?.role != .operator, !(await refusals.admit(identity?.name ?? "")) else { return nil }
        return Refusal(status: .tooManyRequests, message: "Too many refused requests: only an operator may replay or purge.")
    }

    /// The longest target an audit entry keeps (a message id or a filter; what is longer is cut).
    static let auditTargetLimit = 512

    /// Writes a replay or a purge, whatever became of it, to the audit log and the process's log.
    func audit(
        _ action: DeadLetterAction, target: String, count: Int, outcome: String, requestID: String, by identity: DashboardIdentity?,
        logger: Logger
    ) async throws {
        // What a request asked for, NULs shown as U+FFFD (PostgreSQL's text cannot hold one), cut to its bound.
        var target = target.utf8.contains(0) ? target.replacingOccurrences(of: "\0", with: "\u{FFFD}") : target
        if target.utf8.count > Self.auditTargetLimit {
            target = String(decoding: target.utf8.prefix(Self.auditTargetLimit - 3), as: UTF8.self) + "…"
        }
        _ = try await store.recordAudit(AuditEntry(
            atMs: Int64((Date().timeIntervalSince1970 * 1000).rounded()), actor: identity?.name ?? "", role: identity?.role.rawValue ?? "",
            action: action.rawValue, target: target, count: count, outcome: outcome, requestID: requestID))
        logger.notice(
            "dashboard \(action.rawValue)",
            metadata: ["user": "\(identity?.name ?? "")", "target": "\(target)", "outcome": "\(outcome)", "request_id": "\(requestID)"])
    }

    private func confirmation(_ action: DeadLetterAction, _ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        guard context.identity?.role == .operator else {
            return Self.problem(.forbidden, "Only an operator may \(action.rawValue) dead letters.", link: "/dead-letters/\(Link.encode(id))")
        }
        guard let letter = try await store.deadLetters(messageID: id).first else {
            return Self.problem(.notFound, "The ledger has no dead letter with this message id.", link: "/failures")
        }
        let csrf = context.session.map { HTML("<input type=\"hidden\" name=\"csrf_token\" value=\"\($0.csrfToken)\">") } ?? .empty
        let (explanation, button): (HTML, HTML) = switch action {
        case .replay: (
            """
            <p>The dead letter goes back to <strong>\(letter.queue)</strong> with its message id and a fresh attempt count; the
            job's status follows it. This is written to the audit log.</p>
            """, "Replay to \(letter.queue)")
        case .purge: (
            """
            <p>The dead letter is deleted from <strong>\(WarrenTopology(queue: letter.queue).deadLetterQueue)</strong> for good;
            the ledger keeps its record, marked purged. This is written to the audit log.</p>
            """, "Delete it for good")
        }
        return page("\(action.rawValue.capitalized) \(id)", context, nav: "failures", content: """
            <h1>\(action.rawValue.capitalized) <code>\(id)</code>?</h1>
            \(explanation)
            <form method="post" action="/dead-letters/\(Link.encode(id))/\(action.rawValue)">\(csrf)
            <button type="submit"\(action == .purge ? HTML(" class=\"danger\"") : .empty)>\(button)</button> <a href="/dead-letters/\(Link.encode(id))">Cancel</a>
            </form>
            """)
    }

    private func runFromPage(_ action: DeadLetterAction, _ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        if let refusal = try await Self.refuseWithoutCSRF(request, context) { return refusal }
        switch try await run(action, id, as: context.identity, logger: context.logger) {
        case .done:
            return Response(status: .seeOther, headers: [.location: "/jobs/\(Link.encode(id))"])
        case .refused(let status, let why):
            return Self.problem(status, why, link: "/dead-letters/\(Link.encode(id))")
        }
    }

    private func runFromAPI(_ action: DeadLetterAction, _ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        if context.session != nil, let refusal = try await Self.refuseWithoutCSRF(request, context) { return refusal }
        switch try await run(action, id, as: context.identity, logger: context.logger) {
        case .done(let count, let requestID):
            return try JSONResponse.make(ActionAnswer(action: action, count: count, requestID: requestID))
        case .refused(let status, let why):
            return try JSONResponse.error(status, Self.errorCode(status, otherwise: "not_\(action.pastTense)"), why)
        }
    }

    /// `{"replayed": n, "request_id": …}` or `{"purged": n, "request_id": …}`.
    private struct ActionAnswer: Encodable {
        var action: DeadLetterAction
        var count: Int
        var requestID: String

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ name: String) { stringValue = name }
            init?(stringValue: String) { self.init(stringValue) }
            init?(intValue: Int) { nil }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(count, forKey: Key(action.pastTense))
            try container.encode(requestID, forKey: Key("request_id"))
        }
    }

    private func auditPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let before: Int64?
        do {
            before = try LedgerAPI.listQuery(from: request.uri.queryParameters.map { (String($0.key), String($0.value)) }, known: ["before"]).before
        } catch let error as LedgerAPI.BadRequest {
            return page("Audit log", context, nav: "audit", status: .badRequest, content: "<h1>Audit log</h1>" + Self.errorNote(error.message))
        }
        let entries = try await store.auditLog(limit: 50, before: before)
        let rows = entries.map { entry -> HTML in
            """
            <tr><td class="nowrap">\(Format.time(entry.atMs))</td><td>\(entry.actor) <span class="hint">(\(entry.role))</span></td>\
            <td>\(entry.action)</td><td>\(entry.target)</td><td class="number">\(entry.count)</td>\
            <td\(entry.outcome == "done" ? HTML("") : HTML(" class=\"error-text\""))>\(entry.outcome)</td><td><code>\(entry.requestID)</code></td></tr>
            """
        }
        let next: HTML = entries.count == 50 ? "<p class=\"pages\"><a rel=\"next\" href=\"/audit?before=\(entries.last?.id ?? 0)\">Older →</a></p>" : .empty
        let table = Self.table(
            "Replays and purges, newest first", ["When", "Who", "What", "Of", "Dead letters", "Outcome", "Request"],
            numeric: ["Dead letters"], rows: rows, empty: "No replay or purge yet.")
        return page("Audit log", context, nav: "audit", content: "<h1>Audit log</h1>" + table + next)
    }

    // MARK: Layout

    func page(
        _ title: String, _ context: DashboardRequestContext, nav active: String, status: HTTPResponse.Status = .ok, content: HTML
    ) -> Response {
        let links = [("queues", "/queues", "Queues"), ("jobs", "/jobs", "Jobs"), ("failures", "/failures", "Failures"), ("operations", "/operations", "Operations"), ("audit", "/audit", "Audit log")].map { key, path, label -> HTML in
            "<a href=\"\(path)\"\(key == active ? HTML(" aria-current=\"page\"") : .empty)>\(label)</a>"
        }
        let who: HTML = context.identity.map { identity in
            let signOut: HTML = context.session.map { session in
                """
                <form method="post" action="/sign-out" class="inline"><input type="hidden" name="csrf_token" value="\(session.csrfToken)">\
                <button type="submit" class="link">Sign out</button></form>
                """
            } ?? .empty
            return "<span class=\"who\">\(identity.name) (\(identity.role.rawValue))</span>\(signOut)"
        } ?? .empty
        let header: HTML = """
            <header><nav aria-label="Dashboard"><a class="brand" href="/jobs">Warren</a>\(links)</nav><div class="account">\(who)</div></header>
            """
        return Self.document(title: title, content: header + "<main>\(content)</main>").response(status: status)
    }

    static func document(title: String, content: HTML) -> HTML {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(title) · Warren</title><link rel="stylesheet" href="/assets/dashboard.css"></head>
        <body>\(content)</body></html>
        """
    }

    static func badge(_ state: JobState) -> HTML {
        "<span class=\"badge \(state.rawValue)\">\(state.rawValue.replacingOccurrences(of: "_", with: " "))</span>"
    }

    /// A table of `rows` under `columns` (those in `numeric` right-aligned) with a caption for screen readers; `empty`
    /// as a note instead when there are no rows (`nil`: the table, empty).
    static func table(_ caption: String, _ columns: [String], numeric: Set<String> = [], rows: [HTML], empty: String? = nil) -> HTML {
        if rows.isEmpty, let empty { return "<p class=\"empty\">\(empty)</p>" }
        let headers = columns.map { column -> HTML in
            "<th scope=\"col\"\(numeric.contains(column) ? HTML(" class=\"number\"") : .empty)>\(column)</th>"
        }
        return """
            <table><caption class="visually-hidden">\(caption)</caption>
            <thead><tr>\(headers)</tr></thead>
            <tbody>\(rows)</tbody></table>
            """
    }

    /// The link to the page after `cursor` of a search at `path`, its other parameters kept; nothing on the last page.
    static func nextPage(_ path: String, _ parameters: [(String, String)], after cursor: LedgerCursor?) -> HTML {
        guard let cursor else { return .empty }
        return "<p class=\"pages\"><a rel=\"next\" href=\"\(Link.to(path, keep(parameters, except: "after") + [("after", cursor.token)]))\">Next page →</a></p>"
    }

    static func errorNote(_ message: String) -> HTML {
        "<p class=\"error\" role=\"alert\">\(message)</p>"
    }

    static func problem(_ status: HTTPResponse.Status, _ message: String, link: String, headers: HTTPFields = [:]) -> Response {
        document(title: status.reasonPhrase, content: """
            <main><h1>\(status.reasonPhrase)</h1><p class="error" role="alert">\(message)</p><p><a href="\(link)">Go on →</a></p></main>
            """).response(status: status, headers: headers)
    }

    /// The parameters to carry into the next page's link.
    static func keep(_ parameters: [(String, String)], except dropped: String) -> [(String, String?)] {
        parameters.filter { $0.0 != dropped }.map { ($0.0, $0.1) }
    }

    static func keep(_ parameters: [(String, String)], only kept: Set<String>) -> [(String, String?)] {
        parameters.filter { kept.contains($0.0) }.map { ($0.0, $0.1) }
    }
}
