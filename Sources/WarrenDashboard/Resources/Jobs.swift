import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// Jobs: the search page, a job and its attempts; their JSON is the ledger API's (`/api/jobs`).
extension Dashboard {
    func addJobRoutes(pages: RouterGroup<DashboardRequestContext>, api: RouterGroup<DashboardRequestContext>) {
        pages.get("jobs") { request, context in try await jobsPage(request, context) }
        pages.get("jobs/:message_id") { _, context in try await jobPage(context) }
        LedgerAPI(store: store).addJobRoutes(to: api)
    }

    func jobsPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
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
            return page(
                "Jobs", context, nav: "jobs", status: .badRequest,
                content: jobSearchForm(value) + Self.errorNote(error.message))
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
            "Jobs, most recent first",
            ["Message id", "Type", "Queue", "Status", "Attempts", "Published", "Last event", "Last error"],
            rows: rows, empty: "No job matches.")
        return page(
            "Jobs", context, nav: "jobs",
            content: jobSearchForm(value) + table + Self.nextPage("/jobs", filters, after: found.next))
    }

    func jobSearchForm(_ value: (String) -> String) -> HTML {
        let options =
            [HTML("<option value=\"\">any</option>")]
            + JobState.all.map { state in
                "<option value=\"\(state.rawValue)\"\(value("status") == state.rawValue ? HTML(" selected") : .empty)>\(state.rawValue)</option>"
            }
        return """
            <h1>Jobs</h1>
            <form class="search" method="get" action="/jobs" role="search">
            <div><label for="id">Message id</label><input id="id" name="id"></div>
            <div><label for="type">Type</label><input id="type" name="type" value="\(value("type"))"></div>
            <div><label for="queue">Queue</label><input id="queue" name="queue" value="\(value("queue"))"></div>
            <div><label for="schedule">Schedule</label><input id="schedule" name="schedule" value="\(value("schedule"))"></div>
            <div><label for="status">Status</label><select id="status" name="status">\(options)</select></div>
            <div><label for="since">Since <span class="hint">(24h, 7d or a time)</span></label><input id="since" name="since" value="\(value("since"))"></div>
            <div><label for="until">Until</label><input id="until" name="until" value="\(value("until"))"></div>
            <div><button type="submit">Search</button></div>
            </form>
            """
    }

    func jobPage(_ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("message_id")
        guard let job = try await store.job(messageID: id) else {
            return page(
                "Job not found", context, nav: "jobs", status: .notFound,
                content: """
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
        let deadLetters: HTML =
            job.timeline.contains(where: { $0.outcome == WarrenEvent.Kind.deadLetter.rawValue })
            ? "<p><a href=\"/dead-letters/\(Link.encode(id))\">Its dead letters: headers and body →</a></p>" : .empty
        let content: HTML = """
            <h1>Job <code>\(job.messageID)</code></h1>
            <dl class="facts">
            <dt>Status</dt><dd>\(Self.badge(job.state))</dd>
            <dt>Type</dt><dd>\(job.type)</dd>
            <dt>Queue</dt><dd><a href="\(Link.to("/jobs", [("queue", job.queue)]))">\(job.queue)</a></dd>
            <dt>Attempts</dt><dd>\(job.attempts)</dd>
            <dt>Published</dt><dd>\(Format.time(job.publishedAtMs))</dd>
            \(job.dueAtMs.map { HTML("<dt>Due</dt><dd>\(Format.time($0))</dd>") } ?? .empty)
            \(job.schedule.map { name in HTML("<dt>Schedule</dt><dd>\(name)</dd><dt>Scheduled for</dt><dd>\(Format.time(job.scheduledForMs))</dd>") } ?? .empty)
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
}
