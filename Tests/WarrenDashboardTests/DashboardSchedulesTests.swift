import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenLedger
import WarrenTestSupport

@testable import WarrenDashboard

/// The schedules page and `/api/schedules` over a real (in-memory) scheduler: what operators see and may do, what
/// viewers and forged forms may not, each attempt in the audit log.
@Suite("The dashboard's schedules", .serialized)
struct DashboardSchedulesTests {
    func json(_ body: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
    }

    @Test func operatorsSeeRunPauseAndResumeSchedulesAndViewersOnlySee() async throws {
        let transport = InMemoryTransport()
        let job = try RecurringJob(
            "nightly-report", schedule: .cron("30 2 * * *", timeZone: "Europe/Berlin"), queue: "reports"
        ) { TestTick(at: $0) }
        let scheduler = try Scheduler(jobs: [job], transport: transport, campaignInterval: .milliseconds(20))
        try await DashboardScene.with(schedules: InMemorySchedules(transport: transport)) { scene in
            let noLeader = await scene.request(
                "POST", "/api/schedules/nightly-report/pause", headers: scene.operatorAuth)
            #expect(noLeader.status == 404, "before any leader, no schedule exists to pause: \(noLeader.body)")
            #expect(!transport.scheduleState("nightly-report").paused)
            let before = await scene.request("GET", "/api/schedules", headers: scene.viewerAuth)
            #expect(before.status == 200 && before.body.contains(#""schedules":[]"#), "\(before.body)")
            #expect(json(before.body)?["leader_host"] is NSNull)
            let empty = await scene.request("GET", "/schedules", headers: scene.viewerAuth)
            #expect(empty.status == 200 && empty.body.contains("No scheduler has led"), "\(empty.body)")

            try await whileRunning([{ try await scheduler.run() }]) {
                guard try await eventually({ transport.scheduleDirectory() != nil }) else {
                    throw TestFailure("no leader")
                }
                // A run the ledger recorded shows among the schedule's last runs.
                var started = WarrenEvent(
                    event: .ack, messageID: "nightly-report@2026-12-07T01:30:00Z", type: "test.tick", queue: "reports",
                    attempt: 1, atMs: 1_765_071_000_500)
                (started.schedule, started.scheduledForMs) = ("nightly-report", 1_765_071_000_000)
                try await scene.store.record([started])

                let listed = await scene.request("GET", "/api/schedules", headers: scene.viewerAuth)
                let overview = try #require(json(listed.body), "\(listed.body)")
                #expect(overview["leader_host"] as? String == ProcessInfo.processInfo.hostName)
                let schedules = try #require(overview["schedules"] as? [[String: Any]])
                let entry = try #require(schedules.first)
                #expect(entry["name"] as? String == "nightly-report" && entry["kind"] as? String == "cron")
                #expect(
                    entry["expression"] as? String == "30 2 * * *" && entry["time_zone"] as? String == "Europe/Berlin")
                #expect(entry["paused"] as? Bool == false && entry["next_run_ms"] is Int)
                let runs = try #require(entry["last_runs"] as? [[String: Any]])
                #expect(runs.first?["message_id"] as? String == "nightly-report@2026-12-07T01:30:00Z")
                #expect(runs.first?["status"] as? String == "succeeded" && runs.first?["manual"] as? Bool == false)

                // A viewer sees no buttons and is refused, and the refusal is audited.
                let viewerPage = await scene.request("GET", "/schedules", headers: scene.viewerAuth)
                #expect(viewerPage.body.contains("nightly-report") && !viewerPage.body.contains("Run now"))
                let refused = await scene.request(
                    "POST", "/api/schedules/nightly-report/trigger", headers: scene.viewerAuth)
                #expect(refused.status == 403 && refused.body.contains(#""error":"forbidden""#), "\(refused.body)")

                // An operator runs it now: a run with its own id reaches the queue.
                let triggered = await scene.request(
                    "POST", "/api/schedules/nightly-report/trigger", headers: scene.operatorAuth)
                #expect(triggered.status == 200, "\(triggered.body)")
                let requestID = try #require(json(triggered.body)?["request_id"] as? String)
                guard try await eventually({ transport.peek("reports").count == 1 }) else {
                    throw TestFailure("no run now")
                }
                #expect(transport.peek("reports").first?.properties.messageID == "nightly-report@manual-\(requestID)")

                // Pause from the page's form: with the session's CSRF token, not without it.
                let (cookie, csrf) = try await scene.session(from: "10.0.0.7")
                let form = [("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded")]
                let page = await scene.request("GET", "/schedules", headers: [("Cookie", cookie)], from: "10.0.0.7")
                #expect(page.body.contains("Run now") && page.body.contains("/schedules/nightly-report/pause"))
                let forged = await scene.request(
                    "POST", "/schedules/nightly-report/pause", headers: form, body: "csrf_token=forged",
                    from: "10.0.0.7")
                #expect(forged.status == 403)
                #expect(
                    transport.scheduleDirectory()?.schedules.first?.paused == false, "a forged form changes nothing")
                let paused = await scene.request(
                    "POST", "/schedules/nightly-report/pause", headers: form, body: "csrf_token=\(csrf)",
                    from: "10.0.0.7")
                #expect(paused.status == 303 && paused.headers["location"] == "/schedules", "\(paused.status)")
                #expect(transport.scheduleDirectory()?.schedules.first?.paused == true)
                let resumed = await scene.request(
                    "POST", "/api/schedules/nightly-report/resume", headers: scene.operatorAuth)
                #expect(resumed.status == 200 && transport.scheduleDirectory()?.schedules.first?.paused == false)

                // Names no leader lists.
                for target in [
                    "/api/schedules/nightly-reports/trigger", "/api/schedules/..%2F..%2Fjobs/pause",
                    "/api/schedules/\(String(repeating: "x", count: 5_000))/resume",
                ] {
                    let answer = await scene.request("POST", target, headers: scene.operatorAuth)
                    #expect(answer.status == 404, "\(target.prefix(60)): \(answer.status) \(answer.body.prefix(200))")
                }

                let audit = try await scene.store.auditLog(limit: 20, before: nil)
                #expect(audit.contains { $0.action == "trigger" && $0.outcome == "refused" && $0.role == "viewer" })
                #expect(audit.contains { $0.action == "trigger" && $0.outcome == "done" && $0.requestID == requestID })
                #expect(audit.contains { $0.action == "pause" && $0.outcome == "done" })
                #expect(audit.contains { $0.action == "resume" && $0.target == "schedule nightly-report" })
                #expect(
                    audit.filter {
                        $0.action == "pause" && $0.target == "schedule nightly-report" && $0.outcome == "done"
                    }.count == 1,
                    "the forged form never ran")
                #expect(audit.contains { $0.action == "pause" && $0.outcome.hasPrefix("failed: No scheduler leader") })
            }
        }
    }

    /// Schedule operations whose directory cannot be read (someone else's message in its queue).
    struct UnreadableDirectory: ScheduleOperations {
        let inner: InMemorySchedules
        var scope: String? { nil }
        func directory() async throws -> ScheduleDirectory? {
            throw WarrenError(
                .invalidConfiguration, "the queue warren.schedules holds something other than a directory")
        }
        func trigger(_ stateName: String, requestID: String, requestedBy: String) async throws {
            try await inner.trigger(stateName, requestID: requestID, requestedBy: requestedBy)
        }
        func setPaused(_ paused: Bool, stateName: String) async throws {
            try await inner.setPaused(paused, stateName: stateName)
        }
    }

    @Test func anUnreadableDirectoryIsSaidAndPauseStillWorks() async throws {
        let transport = InMemoryTransport()
        try await DashboardScene.with(schedules: UnreadableDirectory(inner: InMemorySchedules(transport: transport))) {
            scene in
            let api = await scene.request("GET", "/api/schedules", headers: scene.viewerAuth)
            #expect(api.status == 502 && api.body.contains("directory_unreadable"), "\(api.body)")
            let page = await scene.request("GET", "/schedules", headers: scene.viewerAuth)
            #expect(page.status == 502 && page.body.contains("cannot be read"), "\(page.status)")
            let paused = await scene.request("POST", "/api/schedules/nightly/pause", headers: scene.operatorAuth)
            #expect(paused.status == 200, "the emergency control needs no directory: \(paused.body)")
            #expect(transport.scheduleState("nightly").paused)
            let bad = await scene.request("POST", "/api/schedules/a%20b/pause", headers: scene.operatorAuth)
            #expect(bad.status == 404, "no schedule can have that name: \(bad.body)")
        }
    }

    @Test func textFromTheDirectoryIsEscaped() async throws {
        let transport = InMemoryTransport()
        let hostile = "<img src=x onerror=alert(1)>"
        let job = try RecurringJob("escaped", schedule: .every(.seconds(3600)), queue: hostile) { TestTick(at: $0) }
        let scheduler = try Scheduler(jobs: [job], transport: transport, campaignInterval: .milliseconds(20))
        try await DashboardScene.with(schedules: InMemorySchedules(transport: transport)) { scene in
            try await whileRunning([{ try await scheduler.run() }]) {
                guard try await eventually({ transport.scheduleDirectory() != nil }) else {
                    throw TestFailure("no leader")
                }
                let page = await scene.request("GET", "/schedules", headers: scene.operatorAuth)
                #expect(page.status == 200 && !page.body.contains(hostile), "\(page.body)")
                #expect(page.body.contains("&lt;img src=x onerror=alert(1)&gt;"))
            }
        }
    }

    @Test func withoutABrokerTheScheduleAPIAnswers503() async throws {
        try await DashboardScene.with { scene in
            let answer = await scene.request("GET", "/api/schedules", headers: scene.viewerAuth)
            #expect(answer.status == 503 && answer.body.contains("no_broker"), "\(answer.body)")
            let action = await scene.request("POST", "/api/schedules/any/trigger", headers: scene.operatorAuth)
            #expect(action.status == 503, "\(action.body)")
        }
    }
}
