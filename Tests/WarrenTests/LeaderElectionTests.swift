import Foundation
import Synchronization
import Testing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

@Suite("Leader election and the scheduler, in memory")
struct LeaderElectionTests {
    @Test func oneLeadsTheOtherStandsByAndTakesOverWhenTheTermEnds() async throws {
        let transport = InMemoryTransport()
        let leading = AwaitableState<[String]>([])
        func election(_ name: String, campaignInterval: Duration) throws -> LeaderElection {
            try LeaderElection(work: "cleanup", transport: transport, campaignInterval: campaignInterval) { _ in
                leading.update { $0.append(name) }
                try await Task.sleep(for: .seconds(3600))
            }
        }
        // The first campaigns again only 60 s after losing: the standby, campaigning every 20 ms, takes over.
        let first = try election("first", campaignInterval: .seconds(60))
        let second = try election("second", campaignInterval: .milliseconds(20))
        try await whileRunning([{ try await first.run() }]) {
            try await leading.wait { $0 == ["first"] }
            #expect(first.role == .leader)
            try await whileRunning([{ try await second.run() }]) {
                guard try await eventually({ second.role == .standby }) else { throw TestFailure("no standby") }
                #expect(leading.update { $0 } == ["first"], "the standby never led")
                transport.endLeadership(of: "cleanup")
                try await leading.wait { $0 == ["first", "second"] }
                #expect(second.role == .leader)
                guard try await eventually({ first.role == .standby }) else { throw TestFailure("first still leads") }
                #expect(first.status.work == "cleanup")
            }
        }
        #expect(first.role == .stopped && second.role == .stopped)
    }

    @Test func aLeadershipThatEndedCannotPublish() async throws {
        let transport = InMemoryTransport()
        let held = AwaitableState<Leadership?>(nil)
        let election = try LeaderElection(work: "fenced", transport: transport, campaignInterval: .seconds(60)) {
            leadership in
            held.update { $0 = leadership }
            // Ignores its cancellation for a moment, as a frozen process would.
            try? await Task.sleep(for: .seconds(3600))
        }
        try await whileRunning([{ try await election.run() }]) {
            try await held.wait { $0 != nil }
            let leadership = try #require(held.update { $0 })
            try await leadership.publish(TestTick(at: Date()), to: .queue("ticks"), messageID: "before")
            #expect(transport.peek("ticks").map(\.properties.messageID) == ["before"])
            transport.endLeadership(of: "fenced")
            #expect(!leadership.isHeld)
            await #expect(throws: WarrenError.self) {
                try await leadership.publish(TestTick(at: Date()), to: .queue("ticks"), messageID: "after")
            }
            #expect(transport.peek("ticks").map(\.properties.messageID) == ["before"])
        }
    }

    @Test func badNamesAndIntervalsAreRefused() {
        let transport = InMemoryTransport()
        for name in ["", "has space", "slash/no", String(repeating: "a", count: 121), "ünïcode"] {
            #expect(throws: WarrenError.self) { try LeaderElection(work: name, transport: transport) { _ in } }
            #expect(throws: WarrenError.self) {
                try RecurringJob(name, schedule: .every(.seconds(1)), queue: "q") { TestTick(at: $0) }
            }
        }
        #expect(throws: WarrenError.self) {
            try LeaderElection(work: "ok", transport: transport, campaignInterval: .zero) { _ in }
        }
        #expect(throws: WarrenError.self) { try Scheduler(jobs: [], transport: transport) }
    }

    @Test func theLeaderSaysWhatItSchedulesAndRunsAJobOnRequestWithItsOwnID() async throws {
        let transport = InMemoryTransport()
        let daily = try RecurringJob(
            "report", schedule: .cron("30 2 * * *", timeZone: "Europe/Berlin"), queue: "reports",
            missedTicks: .skip
        ) { TestTick(at: $0) }
        let hourly = try RecurringJob("sweep", schedule: .every(.seconds(3600)), queue: "sweeps") { TestTick(at: $0) }
        let scheduler = try Scheduler(
            jobs: [daily, hourly], transport: transport, scope: "staging", campaignInterval: .milliseconds(20))
        #expect(transport.scheduleDirectory(scope: "staging") == nil, "nobody has led yet")
        try await whileRunning([{ try await scheduler.run() }]) {
            guard try await eventually({ transport.scheduleDirectory(scope: "staging")?.schedules.count == 2 }) else {
                throw TestFailure("no directory")
            }
            transport.setSchedulePaused(true, schedule: "staging.report")
            let directory = try #require(transport.scheduleDirectory(scope: "staging"))
            #expect(directory.leaderHost == ProcessInfo.processInfo.hostName)
            #expect(transport.scheduleDirectory() == nil, "the unscoped scheduler's directory is another")
            let report = try #require(directory.schedules.first { $0.name == "report" })
            #expect(report.kind == "cron" && report.expression == "30 2 * * *" && report.timeZone == "Europe/Berlin")
            #expect(report.stateName == "staging.report" && report.queue == "reports" && report.missedTicks == "skip")
            #expect(report.paused, "read from the pause flag now")
            let next = try #require(report.nextRunMs)
            let expected = try #require(daily.schedule.nextFireTime(after: Date()))
            #expect(abs(Double(next) / 1000 - expected.timeIntervalSince1970) < 1)
            let sweep = try #require(directory.schedules.first { $0.name == "sweep" })
            #expect(sweep.kind == "interval" && sweep.intervalSeconds == 3600 && sweep.expression == nil)
            #expect(!sweep.paused)

            // A run on request, paused or not, with an id no tick can have; the same request twice, the same id.
            try transport.triggerSchedule("staging.report", requestID: "op-1", requestedBy: "alice")
            try transport.triggerSchedule("staging.report", requestID: "op-1", requestedBy: "alice")
            guard try await eventually({ transport.peek("reports").count == 2 }) else {
                throw TestFailure("no run on request")
            }
            for run in transport.peek("reports") {
                #expect(run.properties.messageID == "report@manual-op-1")
                let scheduled = try #require(ScheduledRun(headers: run.properties.headers ?? [:]))
                #expect(scheduled.isManual && scheduled.name == "report")
            }
            #expect(throws: WarrenError.self) { try transport.triggerSchedule("staging.report", requestID: "a b") }
            #expect(throws: WarrenError.self) { try transport.triggerSchedule("no such/schedule") }
        }
    }

    @Test func theLeaderPublishesOneRunPerTickRecordsItAndSkipsWhilePaused() async throws {
        let transport = InMemoryTransport()
        let job = try RecurringJob("ping", schedule: .every(.seconds(1)), queue: "pings") { TestTick(at: $0) }
        let scheduler = try Scheduler(jobs: [job], transport: transport, campaignInterval: .milliseconds(20))
        try await whileRunning([{ try await scheduler.run() }]) {
            guard try await eventually(timeout: .seconds(10), { transport.peek("pings").count >= 2 }) else {
                throw TestFailure("no runs")
            }
            #expect(scheduler.role == .leader)
            let runs = transport.peek("pings")
            let ids = runs.compactMap(\.properties.messageID)
            #expect(Set(ids).count == ids.count, "no tick twice: \(ids)")
            for run in runs {
                let scheduled = try #require(ScheduledRun(headers: run.properties.headers ?? [:]))
                #expect(scheduled.name == "ping")
                #expect(
                    run.properties.messageID
                        == RecurringJob.messageID(name: "ping", scheduledFor: scheduled.scheduledFor))
                #expect(run.properties.type == "test.tick")
            }
            let seconds = runs.compactMap { ScheduledRun(headers: $0.properties.headers ?? [:])?.scheduledFor }
            for (earlier, later) in zip(seconds, seconds.dropFirst()) {
                #expect(later.timeIntervalSince(earlier) == 1, "consecutive ticks, none skipped")
            }
            // Paused: the ticks go on being recorded, no run is published.
            transport.setSchedulePaused(true, schedule: "ping")
            let recorded = transport.peek("pings").count
            let pausedAt = try #require(transport.scheduleState("ping").lastTick)
            guard
                try await eventually(
                    timeout: .seconds(10), { (transport.scheduleState("ping").lastTick ?? 0) >= pausedAt + 2000 })
            else { throw TestFailure("no tick recorded while paused") }
            // One run may have been on its way when the pause came.
            #expect(transport.peek("pings").count <= recorded + 1)
        }
    }

    @Test func aNewLeaderGoesOnFromTheLastRecordedTick() async throws {
        let transport = InMemoryTransport()
        let job = try RecurringJob("resume", schedule: .every(.seconds(1)), queue: "r", missedTicks: .runAll) {
            TestTick(at: $0)
        }
        // A previous leader's last tick, 5 s ago: 5 ticks are due, all within the misfire threshold.
        let now = Int64(Date().timeIntervalSince1970)
        try await recordTick(transport, schedule: "resume", at: now - 5)
        let scheduler = try Scheduler(jobs: [job], transport: transport, campaignInterval: .milliseconds(20))
        try await whileRunning([{ try await scheduler.run() }]) {
            guard try await eventually(timeout: .seconds(10), { transport.peek("r").count >= 5 }) else {
                throw TestFailure("the due ticks were not published")
            }
        }
        let times = transport.peek("r").compactMap { ScheduledRun(headers: $0.properties.headers ?? [:])?.scheduledFor }
        #expect(times.first == Date(timeIntervalSince1970: TimeInterval(now - 4)), "from the tick after the last one")
        for (earlier, later) in zip(times, times.dropFirst()) { #expect(later.timeIntervalSince(earlier) == 1) }
    }

    private func recordTick(_ transport: InMemoryTransport<ContinuousClock>, schedule: String, at seconds: Int64)
        async throws
    {
        let term = try #require(try await transport.campaign(for: "seed"))
        try await term.publishTick(nil, schedule: schedule, scheduledFor: seconds * 1000)
        await term.resign()
    }
}
