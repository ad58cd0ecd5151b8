import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// A dead letter (headers and body, escaped), and replaying or purging one from its page or the API.
extension Dashboard {
    func addDeadLetterRoutes(pages: RouterGroup<DashboardRequestContext>, api: RouterGroup<DashboardRequestContext>) {
        pages.get("dead-letters/:message_id") { _, context in try await deadLetterPage(context) }
        for action in [DeadLetterAction.replay, .purge] {
            pages.get("dead-letters/:message_id/\(action.rawValue)") { _, context in
                try await confirmation(action, context)
            }
            pages.post("dead-letters/:message_id/\(action.rawValue)") { request, context in
                try await runFromPage(action, request, context)
            }
            api.post("dead-letters/:message_id/\(action.rawValue)") { request, context in
                try await runFromAPI(action, request, context)
            }
        }
        LedgerAPI(store: store).addDeadLetterRoutes(to: api)
    }

    /// At most this much of a body is shown on a page.
    static let bodyDisplayLimit = 256 * 1024

    func deadLetterPage(_ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        let letters = try await store.deadLetters(messageID: id)
        guard !letters.isEmpty else {
            return page(
                "Dead letter not found", context, nav: "failures", status: .notFound,
                content: """
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
        let replay: HTML =
            context.identity?.role == .operator && (queueActions != nil || runner != nil)
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
            return
                "\(settled) by \(letter.settledBy.map { HTML("<a href=\"/operations/\(Link.encode($0))\"><code>\($0)</code></a>") } ?? .empty)"
        }
        return "in \(WarrenTopology(queue: letter.queue).deadLetterQueue), or gone from it"
    }

    /// A body as text when it is UTF-8, as a hex dump when it is binary; never more than ``bodyDisplayLimit``.
    static func body(of letter: DeadLetterRecord) -> HTML {
        guard let body = letter.body else {
            return "<p class=\"empty\">Not recorded (the worker's event options leave bodies out).</p>"
        }
        let truncated: HTML =
            letter.bodyTruncated == true
            ? "<p class=\"hint\">The event carried only the start of the body.</p>" : .empty
        if letter.bodyEncoding == "base64" {
            // Only what is shown is decoded: the length of the rest is known from the text's.
            let padding = body.utf8.suffix(2).filter { $0 == UInt8(ascii: "=") }.count
            let total = max(0, body.utf8.count / 4 * 3 - padding)
            let shown = Array(
                (Data(base64Encoded: String(decoding: body.utf8.prefix((bodyDisplayLimit + 2) / 3 * 4), as: UTF8.self))
                    ?? Data()).prefix(bodyDisplayLimit))
            let cut: HTML =
                shown.count < total ? "<p class=\"hint\">The first \(shown.count) of \(total) bytes.</p>" : .empty
            return
                "<p class=\"hint\">Binary, \(total) bytes, as hex:</p><pre class=\"body hex\">\(Format.hexDump(shown))</pre>\(cut)\(truncated)"
        }
        let shown = String(decoding: body.utf8.prefix(bodyDisplayLimit), as: UTF8.self)
        let cut: HTML =
            shown.utf8.count < body.utf8.count
            ? "<p class=\"hint\">The first \(shown.utf8.count) of \(body.utf8.count) bytes.</p>" : .empty
        return "<pre class=\"body\">\(shown)</pre>\(cut)\(truncated)"
    }

    /// What an operator may do to a dead letter.
    typealias DeadLetterAction = DeadLetterOperation.Action

    /// The outcome of a request, recorded in the audit log whatever it was.
    enum ActionOutcome {
        case done(Int, requestID: String)
        case refused(HTTPResponse.Status, String)
    }

    /// Replays or purges a job's dead letters for `identity`, and writes the attempt to the audit log.
    func run(_ action: DeadLetterAction, _ messageID: String, as identity: DashboardIdentity?, logger: Logger)
        async throws -> ActionOutcome
    {
        if let refusal = await refuseRepeatedRefusals(of: identity) { return .refused(refusal.status, refusal.message) }
        let requestID = "dashboard-\(UUID().uuidString.lowercased())"
        let outcome: ActionOutcome
        let queue = try await store.deadLetters(messageID: messageID).first?.queue
        let filter = DeadLetterFilter(messageID: messageID)
        if identity?.role != .operator {
            outcome = .refused(
                .forbidden, "Only an operator may \(action.rawValue): \(identity?.name ?? "this sign-in") is a viewer.")
        } else if let runner, try await store.countHeldDeadLetters(matching: filter) > 0 {
            do {
                let started = try await runner.start(
                    action, filter: filter, actor: identity?.name ?? "", role: identity?.role.rawValue ?? "",
                    id: requestID)
                let ended = try await runner.execute(started.id)
                outcome =
                    switch ended?.status {
                    case .done?: .done(ended?.settled ?? 0, requestID: requestID)
                    default:
                        .refused(
                            .badGateway,
                            "The \(action.rawValue) did not finish: \(ended?.error ?? "see the operation \(requestID)")."
                        )
                    }
            } catch {
                logger.warning(
                    "dead-letter \(action.rawValue) failed",
                    metadata: ["message_id": "\(messageID)", "error": "\(error)"])
                outcome = .refused(.badGateway, "The broker did not take the \(action.rawValue): \(error)")
            }
        } else if let queueActions {
            if let queue {
                do {
                    let count =
                        switch action {
                        case .replay:
                            try await queueActions.replay(messageID: messageID, queue: queue, replayID: requestID)
                        case .purge: try await queueActions.purge(messageID: messageID, queue: queue)
                        }
                    outcome =
                        count > 0
                        ? .done(count, requestID: requestID)
                        : .refused(
                            .notFound,
                            "No dead letter with this message id is left in \(WarrenTopology(queue: queue).deadLetterQueue): replayed or purged already."
                        )
                } catch {
                    logger.warning(
                        "dead-letter \(action.rawValue) failed",
                        metadata: ["message_id": "\(messageID)", "error": "\(error)"])
                    outcome = .refused(.badGateway, "The broker did not take the \(action.rawValue): \(error)")
                }
            } else {
                outcome = .refused(.notFound, "The ledger has no dead letter with this message id.")
            }
        } else {
            outcome = .refused(.serviceUnavailable, "This needs a broker: this dashboard runs without one.")
        }
        let (count, result): (Int, String) =
            switch outcome {
            case .done(let count, _): (count, "done")
            case .refused(let status, let why): (0, Self.auditOutcome(status, why))
            }
        try await audit(
            action, target: "message \(messageID)\(queue.map { " from \($0)" } ?? "")", count: count, outcome: result,
            requestID: requestID,
            by: identity, logger: logger)
        return outcome
    }

    func confirmation(_ action: DeadLetterAction, _ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        guard context.identity?.role == .operator else {
            return Self.problem(
                .forbidden, "Only an operator may \(action.rawValue) dead letters.",
                link: "/dead-letters/\(Link.encode(id))")
        }
        guard let letter = try await store.deadLetters(messageID: id).first else {
            return Self.problem(.notFound, "The ledger has no dead letter with this message id.", link: "/failures")
        }
        let csrf =
            context.session.map { HTML("<input type=\"hidden\" name=\"csrf_token\" value=\"\($0.csrfToken)\">") }
            ?? .empty
        let (explanation, button): (HTML, HTML) =
            switch action {
            case .replay:
                (
                    """
                    <p>The dead letter goes back to <strong>\(letter.queue)</strong> with its message id and a fresh attempt count; the
                    job's status follows it. This is written to the audit log.</p>
                    """, "Replay to \(letter.queue)"
                )
            case .purge:
                (
                    """
                    <p>The dead letter is deleted from <strong>\(WarrenTopology(queue: letter.queue).deadLetterQueue)</strong> for good;
                    the ledger keeps its record, marked purged. This is written to the audit log.</p>
                    """, "Delete it for good"
                )
            }
        return page(
            "\(action.rawValue.capitalized) \(id)", context, nav: "failures",
            content: """
                <h1>\(action.rawValue.capitalized) <code>\(id)</code>?</h1>
                \(explanation)
                <form method="post" action="/dead-letters/\(Link.encode(id))/\(action.rawValue)">\(csrf)
                <button type="submit"\(action == .purge ? HTML(" class=\"danger\"") : .empty)>\(button)</button> <a href="/dead-letters/\(Link.encode(id))">Cancel</a>
                </form>
                """)
    }

    func runFromPage(_ action: DeadLetterAction, _ request: Request, _ context: DashboardRequestContext) async throws
        -> Response
    {
        let id = try context.parameters.require("message_id")
        if let refusal = try await Self.refuseWithoutCSRF(request, context) { return refusal }
        switch try await run(action, id, as: context.identity, logger: context.logger) {
        case .done:
            return Response(status: .seeOther, headers: [.location: "/jobs/\(Link.encode(id))"])
        case .refused(let status, let why):
            return Self.problem(status, why, link: "/dead-letters/\(Link.encode(id))")
        }
    }

    func runFromAPI(_ action: DeadLetterAction, _ request: Request, _ context: DashboardRequestContext) async throws
        -> Response
    {
        let id = try context.parameters.require("message_id")
        if context.session != nil, let refusal = try await Self.refuseWithoutCSRF(request, context) { return refusal }
        switch try await run(action, id, as: context.identity, logger: context.logger) {
        case .done(let count, let requestID):
            return try JSONAnswer(ActionAnswer(action: action, count: count, requestID: requestID)).response(
                from: request, context: context)
        case .refused(let status, let why):
            return try APIError(Self.errorCode(status, otherwise: "not_\(action.pastTense)"), why).response(
                status, for: request, context: context)
        }
    }

    /// `{"replayed": n, "request_id": …}` or `{"purged": n, "request_id": …}`.
    struct ActionAnswer: Encodable {
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
}
