import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// Recurring jobs: what their leader says of them (``ScheduleDirectory``) with their last runs from the ledger, and an
// operator's run now, pause and resume; JSON at `/api/schedules`.
extension Dashboard {
    func addScheduleRoutes(pages: RouterGroup<DashboardRequestContext>, api: RouterGroup<DashboardRequestContext>) {
        pages.get("schedules") { _, context in try await schedulesPage(context) }
        api.get("schedules") { request, context in
            guard schedules != nil else {
                return try APIError("no_broker", "This dashboard runs without a broker: it cannot see schedules.")
                    .response(.serviceUnavailable, for: request, context: context)
            }
            let overview = try await scheduleOverview()
            if let problem = overview.problem {
                return try APIError("directory_unreadable", "The leader's directory cannot be read: \(problem)")
                    .response(.badGateway, for: request, context: context)
            }
            return try JSONAnswer(overview).response(from: request, context: context)
        }
        for action in ScheduleAction.allCases {
            pages.post("schedules/:state_name/\(action.rawValue)") { request, context in
                let name = try context.parameters.require("state_name")
                if let refusal = try await Self.refuseWithoutCSRF(request, context) { return refusal }
                switch try await run(action, schedule: name, as: context.identity, logger: context.logger) {
                case .done: return Response(status: .seeOther, headers: [.location: "/schedules"])
                case .refused(let status, let why): return Self.problem(status, why, link: "/schedules")
                }
            }
            api.post("schedules/:state_name/\(action.rawValue)") { request, context in
                let name = try context.parameters.require("state_name")
                if context.session != nil, let refusal = try await Self.refuseWithoutCSRF(request, context) {
                    return refusal
                }
                switch try await run(action, schedule: name, as: context.identity, logger: context.logger) {
                case .done(_, let requestID):
                    return try JSONAnswer(["action": action.rawValue, "schedule": name, "request_id": requestID])
                        .response(from: request, context: context)
                case .refused(let status, let why):
                    return try APIError(Self.errorCode(status, otherwise: "not_done"), why).response(
                        status, for: request, context: context)
                }
            }
        }
    }

    /// What an operator may do to a schedule.
    enum ScheduleAction: String, CaseIterable, Sendable {
        /// Run it now (its own message id, marked manual).
        case trigger
        case pause
        case resume
    }

    /// How many of a schedule's latest runs the page and the API show.
    static let lastRunsShown = 5

    /// The directory with each schedule's last runs from the ledger; no schedules before a leader wrote one, or when
    /// it cannot be read (``ScheduleOverview/problem`` says why).
    func scheduleOverview() async throws -> ScheduleOverview {
        guard let schedules else { return ScheduleOverview(scope: nil, directory: nil, rows: []) }
        let read: ScheduleDirectory?
        do {
            read = try await schedules.directory()
        } catch {
            return ScheduleOverview(scope: schedules.scope, directory: nil, rows: [], problem: "\(error)")
        }
        guard let directory = read else { return ScheduleOverview(scope: schedules.scope, directory: nil, rows: []) }
        var rows: [ScheduleOverview.Row] = []
        for entry in directory.schedules {
            let runs = try await store.jobs(matching: JobQuery(limit: Self.lastRunsShown, schedule: entry.name)).jobs
            rows.append(ScheduleOverview.Row(entry: entry, lastRuns: runs.map(ScheduleOverview.Run.init)))
        }
        return ScheduleOverview(scope: directory.scope, directory: directory, rows: rows)
    }

    /// Runs, pauses or resumes schedule `name` for `identity`, and writes the attempt to the audit log.
    func run(_ action: ScheduleAction, schedule name: String, as identity: DashboardIdentity?, logger: Logger)
        async throws -> ActionOutcome
    {
        if let refusal = await refuseRepeatedRefusals(of: identity) { return .refused(refusal.status, refusal.message) }
        let requestID = "dashboard-\(UUID().uuidString.lowercased())"
        let outcome: ActionOutcome
        if identity?.role != .operator {
            outcome = .refused(
                .forbidden,
                "Only an operator may \(action.rawValue) a schedule: \(identity?.name ?? "this sign-in") is a viewer.")
        } else if let schedules {
            do {
                // The leader's directory says which schedules exist. When it cannot be read (someone else's message in
                // its queue), pausing and resuming still work — they are the emergency controls — for a name a
                // schedule can have, and a run now for a schedule whose leader prepared its requests' queue.
                let listed: Bool
                do {
                    listed =
                        try await schedules.directory()?.schedules.contains(where: { $0.stateName == name }) ?? false
                } catch {
                    listed = LeaderElection.isValidName(name)
                }
                guard listed else {
                    return try await audited(
                        .refused(.notFound, "No scheduler leader lists a schedule named '\(name)'."), action, name,
                        requestID, identity, logger)
                }
                switch action {
                case .trigger:
                    try await schedules.trigger(name, requestID: requestID, requestedBy: identity?.name ?? "")
                case .pause: try await schedules.setPaused(true, stateName: name)
                case .resume: try await schedules.setPaused(false, stateName: name)
                }
                outcome = .done(1, requestID: requestID)
            } catch {
                logger.warning(
                    "schedule \(action.rawValue) failed", metadata: ["schedule": "\(name)", "error": "\(error)"])
                outcome = .refused(.badGateway, "The broker did not take the \(action.rawValue): \(error)")
            }
        } else {
            outcome = .refused(.serviceUnavailable, "This needs a broker: this dashboard runs without one.")
        }
        return try await audited(outcome, action, name, requestID, identity, logger)
    }

    private func audited(
        _ outcome: ActionOutcome, _ action: ScheduleAction, _ name: String, _ requestID: String,
        _ identity: DashboardIdentity?, _ logger: Logger
    ) async throws -> ActionOutcome {
        let (count, result): (Int, String) =
            switch outcome {
            case .done(let count, _): (count, "done")
            case .refused(let status, let why): (0, Self.auditOutcome(status, why))
            }
        try await audit(
            action.rawValue, target: "schedule \(name)", count: count, outcome: result, requestID: requestID,
            by: identity, logger: logger)
        return outcome
    }

    func schedulesPage(_ context: DashboardRequestContext) async throws -> Response {
        guard schedules != nil else {
            return page(
                "Schedules", context, nav: "schedules",
                content: """
                    <h1>Schedules</h1><p class="empty">No broker to ask: this dashboard runs with --no-ingest and no --url.</p>
                    """)
        }
        let overview = try await scheduleOverview()
        if let problem = overview.problem {
            return page(
                "Schedules", context, nav: "schedules", status: .badGateway,
                content: "<h1>Schedules</h1>" + Self.errorNote("The leader's directory cannot be read: \(problem)")
                    + "<p>Pausing and resuming still work: <code>POST /api/schedules/&lt;name&gt;/pause</code> and <code>/resume</code> (an operator's token), or <code>warren schedules pause &lt;name&gt;</code>.</p>"
            )
        }
        guard let directory = overview.directory else {
            let scope: HTML = overview.scope.map { " of scope <code>\($0)</code>" } ?? ""
            return page(
                "Schedules", context, nav: "schedules",
                content: """
                    <h1>Schedules</h1><p class="empty">No scheduler\(scope) has led on this broker yet: start a host with a Scheduler.</p>
                    """)
        }
        let isOperator = context.identity?.role == .operator
        let csrf =
            context.session.map { HTML("<input type=\"hidden\" name=\"csrf_token\" value=\"\($0.csrfToken)\">") }
            ?? .empty
        let rows = overview.rows.map { row -> HTML in
            let entry = row.entry
            let spec: HTML =
                entry.kind == "cron"
                ? "<code>\(entry.expression ?? "")</code> <span class=\"hint\">\(entry.timeZone)</span>"
                : "every \(Format.duration((entry.intervalSeconds ?? 0).multipliedReportingOverflow(by: 1000).partialValue))"
            let state: HTML =
                entry.paused
                ? "<span class=\"badge paused\">paused</span>" : "<span class=\"badge active\">active</span>"
            let runs = row.lastRuns.map { run -> HTML in
                """
                <a href="/jobs/\(Link.encode(run.messageID))" title="\(run.messageID)">\(Self.badge(run.status))</a>
                """
            }
            let actions: HTML =
                isOperator
                ? """
                <form method="post" action="/schedules/\(Link.encode(entry.stateName))/trigger" class="inline">\(csrf)<button type="submit">Run now</button></form> \
                <form method="post" action="/schedules/\(Link.encode(entry.stateName))/\(entry.paused ? "resume" : "pause")" class="inline">\(csrf)<button type="submit">\(entry.paused ? "Resume" : "Pause")</button></form>
                """ : .empty
            return """
                <tr><th scope="row"><a href="\(Link.to("/jobs", [("schedule", entry.name)]))">\(entry.name)</a></th><td>\(spec)</td>\
                <td><a href="\(Link.to("/jobs", [("queue", entry.queue)]))">\(entry.queue)</a></td><td>\(entry.missedTicks)</td>\
                <td class="nowrap">\(Format.time(entry.lastTickMs))</td><td class="nowrap">\(Format.time(entry.nextRunMs))</td>\
                <td>\(state)</td><td>\(runs.isEmpty ? HTML("<span class=\"hint\">none yet</span>") : HTML(stringLiteral: ""))\(runs)</td><td>\(actions)</td></tr>
                """
        }
        let table = Self.table(
            "Recurring jobs",
            ["Name", "Schedule", "Queue", "Missed ticks", "Last tick", "Next run", "State", "Last runs", ""],
            rows: rows, empty: "The leader lists no schedule.")
        let note: HTML =
            isOperator
            ? "<p class=\"hint\">A run now has a message id of its own (<code>&lt;name&gt;@manual-&lt;request id&gt;</code>) and runs paused or not; pausing takes effect at the next tick. Each is written to the audit log.</p>"
            : .empty
        return page(
            "Schedules", context, nav: "schedules",
            content: """
                <h1>Schedules</h1>
                <dl class="facts"><dt>Leader</dt><dd>\(directory.leaderHost)</dd><dt>Leading since</dt><dd>\(Format.time(directory.leaderSinceMs))</dd>\
                <dt>Updated</dt><dd>\(Format.time(directory.updatedAtMs))</dd>\(overview.scope.map { HTML("<dt>Scope</dt><dd>\($0)</dd>") } ?? .empty)</dl>
                \(table)
                \(note)
                """)
    }
}

/// `/api/schedules`: `{"scope", "leader_host", "leader_since_ms", "updated_at_ms", "schedules": [each schedule's
/// directory entry and its "last_runs"]}`; the leader's fields `null` and no schedules before one has led.
struct ScheduleOverview: Encodable {
    var scope: String?
    var directory: ScheduleDirectory?
    var rows: [Row]
    /// Why the directory could not be read (not in the JSON: the API answers 502 with it).
    var problem: String?

    struct Row: Encodable {
        var entry: ScheduleDirectory.Entry
        var lastRuns: [Run]

        enum CodingKeys: String, CodingKey { case lastRuns = "last_runs" }

        func encode(to encoder: any Encoder) throws {
            try entry.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(lastRuns, forKey: .lastRuns)
        }
    }

    /// One of a schedule's latest runs, as the ledger has it.
    struct Run: Encodable {
        var messageID: String
        var status: JobState
        var scheduledForMs: Int64?
        var updatedAtMs: Int64
        var manual: Bool

        init(_ job: JobSummary) {
            messageID = job.messageID
            status = job.state
            scheduledForMs = job.scheduledForMs
            updatedAtMs = job.updatedAtMs
            manual = job.messageID.contains("@manual-")
        }

        enum CodingKeys: String, CodingKey {
            case status, manual
            case messageID = "message_id"
            case scheduledForMs = "scheduled_for_ms"
            case updatedAtMs = "updated_at_ms"
        }
    }

    enum CodingKeys: String, CodingKey {
        case scope, schedules
        case leaderHost = "leader_host"
        case leaderSinceMs = "leader_since_ms"
        case updatedAtMs = "updated_at_ms"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(scope, forKey: .scope)
        try container.encode(directory?.leaderHost, forKey: .leaderHost)
        try container.encode(directory?.leaderSinceMs, forKey: .leaderSinceMs)
        try container.encode(directory?.updatedAtMs, forKey: .updatedAtMs)
        try container.encode(rows, forKey: .schedules)
    }
}
