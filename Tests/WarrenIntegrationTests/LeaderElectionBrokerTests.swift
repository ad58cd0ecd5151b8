import Foundation
import Synchronization
import Testing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

@Suite("Leader election and the scheduler on RabbitMQ", .serialized, .tags(.broker), .needs(.broker))
struct LeaderElectionBrokerTests {
    func transport(_ name: String) async throws -> RabbitMQTransport {
        RabbitMQTransport(
            endpoints: [try await TestBroker.endpoint()], connectionName: name, logger: TestBroker.quietLogger())
    }

    @Test func theBrokerRefusesASecondLeaderAndFreesTheQueueWhenTheFirstGoes() async throws {
        let work = TestBroker.uniqueName("election")
        let first = try await transport("first")
        let second = try await transport("second")
        let termOne = try #require(try await first.campaign(for: work), "the first campaign wins")
        #expect(try await second.campaign(for: work) == nil, "403 ACCESS_REFUSED: another process leads")
        #expect(termOne.isHeld)
        await termOne.resign()
        #expect(!termOne.isHeld)
        let termTwo = try #require(try await second.campaign(for: work), "the queue is free once the first resigned")
        // The first's leadership is over: what it publishes does not go out; the second's does.
        let target = TestBroker.uniqueName("resigned-target")
        _ = try await withChannel { channel in try await channel.queueDeclare(target, durable: true) }
        await #expect(throws: WarrenError.self) {
            try await termOne.publish(OutboundMessage(body: [], destination: .queue(target), properties: .init()))
        }
        try await termTwo.publish(OutboundMessage(body: [], destination: .queue(target), properties: .init()))
        await termTwo.resign()
        try await withChannel { channel in
            #expect(try await channel.queueStatus(target).messageCount == 1, "only the leader's message")
            _ = try await channel.queueDelete(target)
            _ = try await channel.queueDelete(LeadershipNames.electionQueue(work))
        }
    }

    @Test func aLeaderWhoseQueueIsDeletedLosesAndIsFenced() async throws {
        let work = TestBroker.uniqueName("deleted")
        let held = AwaitableState<Leadership?>(nil)
        let election = try LeaderElection(
            work: work, transport: try await transport("deleted"), campaignInterval: .seconds(60),
            logger: TestBroker.quietLogger()
        ) { leadership in
            held.update { $0 = leadership }
            try await Task.sleep(for: .seconds(3600))
        }
        let queue = TestBroker.uniqueName("fenced-target")
        _ = try await withChannel { channel in try await channel.queueDeclare(queue, durable: true) }
        try await whileRunning([{ try await election.run() }]) {
            try await held.wait { $0 != nil }
            let leadership = try #require(held.update { $0 })
            try await leadership.publish(TestTick(at: Date()), to: .queue(queue), messageID: "while-leading")
            // The broker cancels the exclusive consumer with its queue: the term is over.
            try await withChannel { channel in
                _ = try await channel.queueDelete(LeadershipNames.electionQueue(work))
            }
            guard try await eventually({ !leadership.isHeld }) else { throw TestFailure("still held") }
            await #expect(throws: (any Error).self) {
                try await leadership.publish(TestTick(at: Date()), to: .queue(queue), messageID: "after")
            }
        }
        try await withChannel { channel in
            #expect(try await channel.queueStatus(queue).messageCount == 1, "only the message published while leading")
            _ = try await channel.queueDelete(queue)
            _ = try await channel.queueDelete(LeadershipNames.electionQueue(work))
        }
    }

    @Test func ticksGoOnAcrossALeaderChangeWithoutARepeatAndStopWhilePaused() async throws {
        let scope = TestBroker.uniqueName("sched")
        let queue = TestBroker.uniqueName("ticks")
        let job = try RecurringJob("tick", schedule: .every(.seconds(1)), queue: queue) { TestTick(at: $0) }
        let state = Scheduler.stateName(of: "tick", scope: scope)
        let first = try Scheduler(
            jobs: [job], transport: try await transport("s1"), scope: scope, campaignInterval: .milliseconds(200),
            logger: TestBroker.quietLogger())
        try await whileRunning([{ try await first.run() }]) {
            guard try await eventually(timeout: .seconds(15), { try await messages(in: queue) >= 3 }) else {
                throw TestFailure("no runs from the first scheduler")
            }
        }
        // A second process takes over from what the first recorded (its last tick is in the broker).
        let second = try Scheduler(
            jobs: [job], transport: try await transport("s2"), scope: scope, campaignInterval: .milliseconds(200),
            logger: TestBroker.quietLogger())
        let pauser = try await transport("pauser")
        var pausedAt = Date.distantFuture
        var resumedAt = Date.distantPast
        try await whileRunning([{ try await second.run() }]) {
            let before = try await messages(in: queue)
            guard try await eventually(timeout: .seconds(15), { try await messages(in: queue) >= before + 3 }) else {
                throw TestFailure("no runs from the second scheduler")
            }
            try await pauser.setSchedulePaused(true, schedule: state)
            pausedAt = Date()
            // The leader records the ticks it skips: wait for two of them past the pause.
            guard
                try await eventually(
                    timeout: .seconds(15),
                    {
                        (try await lastTick(state) ?? .distantPast) >= pausedAt.addingTimeInterval(2)
                    })
            else { throw TestFailure("no skipped tick recorded while paused") }
            try await pauser.setSchedulePaused(false, schedule: state)
            resumedAt = Date()
            let paused = try await messages(in: queue)
            guard try await eventually(timeout: .seconds(10), { try await messages(in: queue) > paused }) else {
                throw TestFailure("no run after resuming")
            }
        }
        await pauser.close()
        // Every run once, consecutive seconds, except the paused stretch.
        let runs = try await drain(queue)
        let times = runs.compactMap { ScheduledRun(headers: $0.properties.headers ?? [:])?.scheduledFor }
        #expect(times.count == runs.count)
        #expect(Set(times).count == times.count, "no tick published twice: \(times)")
        #expect(times == times.sorted())
        // One run may have been on its way when the pause came; none after, until the resume.
        let duringPause = times.filter { $0 > pausedAt.addingTimeInterval(1) && $0 < resumedAt }
        #expect(duringPause.isEmpty, "runs while paused: \(duringPause)")
        let gaps = zip(times, times.dropFirst()).map { $1.timeIntervalSince($0) }
        #expect(gaps.filter { $0 != 1 }.count == 1, "consecutive seconds but for the pause: \(gaps)")
        #expect(Set(runs.compactMap(\.properties.messageID)).count == runs.count)
        try await deleteScheduler(scope: scope, states: [state], queues: [queue])
    }

    /// What operators read and ask never stops the schedule: its directory's queue deleted, the runs go on and the
    /// directory comes back; a run now that cannot be published (its queue is gone) waits, and runs once it can.
    @Test func aLostDirectoryOrAFailedRunNowStopsNoSchedule() async throws {
        let scope = TestBroker.uniqueName("lost").replacingOccurrences(of: "test.", with: "")
        let queue = TestBroker.uniqueName("lost-ticks")
        let job = try RecurringJob("tick", schedule: .every(.seconds(1)), queue: queue) { TestTick(at: $0) }
        let state = Scheduler.stateName(of: "tick", scope: scope)
        let scheduler = try Scheduler(
            jobs: [job], transport: try await transport("leader"), scope: scope,
            campaignInterval: .milliseconds(200), logger: TestBroker.quietLogger())
        let ops = try await transport("operator")
        try await whileRunning([{ try await scheduler.run() }]) {
            guard try await eventually(timeout: .seconds(15), { try await ops.scheduleDirectory(scope: scope) != nil })
            else { throw TestFailure("no directory") }
            try await withChannel { _ = try await $0.queueDelete(ScheduleDirectory.queue(scope: scope)) }
            let before = try await messages(in: queue)
            guard try await eventually(timeout: .seconds(10), { try await messages(in: queue) >= before + 3 }) else {
                throw TestFailure("the runs stopped with the directory")
            }
            guard try await eventually(timeout: .seconds(10), { try await ops.scheduleDirectory(scope: scope) != nil })
            else { throw TestFailure("the directory did not come back") }

            // The job's queue gone, a run now cannot be published: the request waits in its queue.
            try await withChannel { _ = try await $0.queueDelete(queue) }
            try await ops.triggerSchedule(state, requestID: "after-the-queue")
            try await Task.sleep(for: .seconds(1))
            try await withChannel { channel in
                _ = try await channel.queueDeclare(queue, durable: true, arguments: ["x-queue-type": "classic"])
            }
            guard
                try await eventually(
                    timeout: .seconds(20),
                    {
                        try await drain(queue).contains { $0.properties.messageID == "tick@manual-after-the-queue" }
                    })
            else { throw TestFailure("the request was not served once its queue was back") }
        }
        await ops.close()
        #expect(try await messages(in: LeadershipNames.triggerQueue(state)) == 0, "the request settled once served")
        try await deleteScheduler(scope: scope, states: [state], queues: [queue])
    }

    @Test func operatorsReadTheDirectoryPauseAndRunAJobOnRequest() async throws {
        let scope = TestBroker.uniqueName("ops").replacingOccurrences(of: "test.", with: "")
        let queue = TestBroker.uniqueName("reports")
        let job = try RecurringJob("report", schedule: .every(.seconds(3600)), queue: queue) { TestTick(at: $0) }
        let state = Scheduler.stateName(of: "report", scope: scope)
        let scheduler = try Scheduler(
            jobs: [job], transport: try await transport("leader"), scope: scope,
            campaignInterval: .milliseconds(200), logger: TestBroker.quietLogger())
        let ops = try await transport("operator")
        #expect(try await ops.scheduleDirectory(scope: scope) == nil, "nobody has led yet")
        try await whileRunning([{ try await scheduler.run() }]) {
            guard try await eventually(timeout: .seconds(15), { try await ops.scheduleDirectory(scope: scope) != nil })
            else { throw TestFailure("no directory") }
            try await ops.setSchedulePaused(true, schedule: state)
            let directory = try #require(try await ops.scheduleDirectory(scope: scope))
            #expect(directory.scope == scope && directory.leaderHost == ProcessInfo.processInfo.hostName)
            let entry = try #require(directory.schedules.first)
            #expect(entry.stateName == state && entry.kind == "interval" && entry.intervalSeconds == 3600)
            #expect(entry.paused && entry.nextRunMs != nil)
            // Two readers at once both see it (each looks again while the other holds it for a moment).
            async let one = ops.scheduleDirectory(scope: scope)
            async let two = ops.scheduleDirectory(scope: scope)
            let (a, b) = try await (one, two)
            #expect(a != nil && b != nil)

            // Garbage in the request queue is dropped; the next request runs the job, paused or not.
            try await withChannel { channel in
                try await channel.publish(Array("not json".utf8), routingKey: LeadershipNames.triggerQueue(state))
            }
            let requestID = try await ops.triggerSchedule(state, requestedBy: "alice")
            guard try await eventually(timeout: .seconds(10), { try await messages(in: queue) == 1 }) else {
                throw TestFailure("no run on request")
            }
            let run = try #require(try await drain(queue).first)
            #expect(run.properties.messageID == "report@manual-\(requestID)")
            #expect(ScheduledRun(headers: run.properties.headers ?? [:])?.isManual == true)
            await #expect(throws: WarrenError.self) { try await ops.triggerSchedule("no.such.schedule") }
            await #expect(throws: WarrenError.self) { try await ops.triggerSchedule(state, requestID: "a/b") }
        }
        await ops.close()
        // The term's channels are closed: a request taken and not acknowledged would be back in its queue by now.
        #expect(try await messages(in: LeadershipNames.triggerQueue(state)) == 0, "both requests settled")
        try await deleteScheduler(scope: scope, states: [state], queues: [queue])
    }
}

/// Deletes what a scoped scheduler kept on the broker — each job's state (`states`), its directory, its election — and
/// `queues`.
private func deleteScheduler(scope: String, states: [String], queues: [String]) async throws {
    try await withChannel { channel in
        let kept = states.flatMap { state in
            [
                LeadershipNames.lastTickQueue(state), LeadershipNames.pauseQueue(state),
                LeadershipNames.triggerQueue(state),
            ]
        }
        for name in queues + kept + [
            ScheduleDirectory.queue(scope: scope), LeadershipNames.electionQueue("scheduler.\(scope)"),
        ] {
            _ = try await channel.queueDelete(name)
        }
    }
}

private func withChannel<T>(_ body: (AMQPChannel) async throws -> T) async throws -> T {
    try await withConnection { connection in try await body(try await connection.openChannel()) }
}

/// The schedule's last recorded tick, read without taking it (the message returns to its queue with the channel).
private func lastTick(_ state: String) async throws -> Date? {
    try await withChannel { channel in
        let got = try await channel.get(queue: LeadershipNames.lastTickQueue(state), noAck: false)
        return got.flatMap { ScheduledRun(headers: $0.delivery.properties.headers ?? [:])?.scheduledFor }
    }
}

/// Ready messages in `queue`; 0 while it does not exist yet (the scheduler declares it when it starts leading).
private func messages(in queue: String) async throws -> Int {
    do {
        return try await withChannel { channel in try await channel.queueStatus(queue).messageCount }
    } catch let error as AMQPError where error.replyCode == 404 {
        return 0
    }
}

private func drain(_ queue: String) async throws -> [AMQPDelivery] {
    try await withChannel { channel in
        var out: [AMQPDelivery] = []
        while let got = try await channel.get(queue: queue, noAck: true) { out.append(got.delivery) }
        return out
    }
}
