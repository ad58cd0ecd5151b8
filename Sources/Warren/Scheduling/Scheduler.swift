import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import WarrenAMQP

/// Publishes the runs of recurring jobs: one process among all that run a `Scheduler` on the broker leads (a
/// ``LeaderElection`` for the work `scheduler`) and publishes one message per tick of each ``RecurringJob``; the
/// workers consuming each job's queue run it.
///
/// ```swift
/// let cleanup = try RecurringJob("cleanup", schedule: .cron("0 3 * * *", timeZone: "Europe/Berlin"),
///                                queue: "maintenance") { scheduledFor in Cleanup(olderThan: scheduledFor) }
/// let scheduler = try Scheduler(jobs: [cleanup], transport: transport)
/// // ServiceGroup(services: [transport, worker, scheduler], …)
/// ```
///
/// **One tick, one run.** The leader publishes each run on its leadership's connection (fenced: a deposed leader
/// cannot), then records the tick as the schedule's last in a one-message queue on the broker
/// (`warren.schedule.<name>.last`), where the next leader — after a failover or a broker restart — finds it. A leader
/// that dies between the run's confirm and the record's leaves the tick to the next leader, which publishes it again
/// with the same message id: a worker with a shared ``IdempotencyStore`` drops it. No tick is lost for a leader change;
/// ticks that fall in a time without any leader follow the job's ``MissedTickPolicy``.
///
/// With a `scope`, a job's state is kept under `<scope>.<name>` (``stateName(of:scope:)``), so that scoped schedulers
/// on one broker never share it.
///
/// **Pause.** While the queue `warren.schedule.<name>.paused` holds a message the leader publishes no run and
/// records each tick as skipped (resuming does not replay them).
public final class Scheduler: Service, Sendable {
    public let jobs: [RecurringJob]
    /// The election the scheduler's leader wins.
    public let election: LeaderElection
    let logger: Logger

    /// - Parameters:
    ///   - scope: narrows the election (and so the set of processes that share these schedules), e.g. to an
    ///     environment; `nil` for one scheduler per broker (virtual host).
    ///   - campaignInterval: how often a standby asks to lead (the failover time's second half).
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for two jobs of the same name, no job, or more than 1,000.
    public init(
        jobs: [RecurringJob], transport: any WarrenTransport, scope: String? = nil,
        campaignInterval: Duration = .seconds(5), codec: any MessageCodec = JSONMessageCodec(), appID: String? = nil,
        logger: Logger = Logger(label: "warren.scheduler")
    ) throws(WarrenError) {
        guard !jobs.isEmpty else { throw WarrenError(.invalidConfiguration, "a scheduler needs at least one job") }
        guard jobs.count <= ScheduleDirectory.maximumSchedules else {
            throw WarrenError(
                .invalidConfiguration,
                "a scheduler holds at most \(ScheduleDirectory.maximumSchedules) jobs (give others a scope of their own)"
            )
        }
        var names = Set<String>()
        for job in jobs where !names.insert(job.name).inserted {
            throw WarrenError(.invalidConfiguration, "two recurring jobs are named '\(job.name)'")
        }
        for job in jobs {
            try LeadershipNames.check(Self.stateName(of: job.name, scope: scope), as: "a scope and job name together")
        }
        self.jobs = jobs
        self.logger = logger
        let lead: @Sendable (Leadership) async throws -> Void = { [jobs, logger] leadership in
            try await Self.lead(jobs, scope: scope, leadership: leadership, transport: transport, logger: logger)
        }
        self.election = try LeaderElection(
            work: "scheduler", scope: scope, transport: transport, campaignInterval: campaignInterval, codec: codec,
            appID: appID, logger: logger, lead: lead)
    }

    /// Campaigns, and publishes the jobs' runs while leading, until a graceful shutdown.
    public func run() async throws {
        try await election.run()
    }

    /// Where this process stands in the scheduler's election.
    public var role: LeaderElection.Role { election.role }

    /// The name a job's state is kept under on the broker: `scope.name`, or `name` without a scope (what
    /// `RabbitMQTransport.setSchedulePaused(_:schedule:)` takes).
    public static func stateName(of job: String, scope: String?) -> String {
        scope.map { "\($0).\(job)" } ?? job
    }

    private static func lead(
        _ jobs: [RecurringJob], scope: String?, leadership: Leadership, transport: any WarrenTransport, logger: Logger
    ) async throws {
        logger.info("scheduling", metadata: ["jobs": .string(jobs.map(\.name).sorted().joined(separator: ","))])
        let board = ScheduleBoard(scope: scope, since: leadership.since, term: leadership.term, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for job in jobs {
                let stateName = stateName(of: job.name, scope: scope)
                group.addTask {
                    try await retrying(job, what: "the schedule", leadership: leadership, logger: logger) {
                        try await tick(
                            job, stateName: stateName, leadership: leadership, transport: transport, board: board,
                            logger: logger)
                    }
                }
                group.addTask {
                    try await retrying(job, what: "running on request", leadership: leadership, logger: logger) {
                        try await serveTriggers(job, stateName: stateName, leadership: leadership, logger: logger)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Runs `body` until it returns; when it fails (the job's queue deleted or declared otherwise, a codec error), tries
    /// again after a while, without stopping the other jobs or giving up the leadership. A lost leadership ends it.
    private static func retrying(
        _ job: RecurringJob, what: String, leadership: Leadership, logger: Logger, _ body: () async throws -> Void
    ) async throws {
        var failures: Int64 = 0
        while true {
            do {
                return try await body()
            } catch {
                if Task.isCancelled || !leadership.isHeld { throw error }
                failures += 1
                let delay = Duration.seconds(min(60, 5 * failures))
                logger.error(
                    "\(what) failed; trying again",
                    metadata: [
                        "schedule": .string(job.name), "error": "\(error)",
                        "retry_in_ms": .stringConvertible(delay.milliseconds),
                    ])
                try await Task.sleep(for: delay)
            }
        }
    }

    /// Publishes a run of `job` for each request for a run now, while `leadership` holds: paused or not (an operator
    /// asked), with a message id of its own (``RecurringJob/manualMessageID(name:requestID:)``) and the header
    /// ``ScheduleHeader/manual``. A request is settled once its run is confirmed; one still open when the term ends is
    /// served by the next leader, with the same message id.
    private static func serveTriggers(
        _ job: RecurringJob, stateName: String, leadership: Leadership, logger: Logger
    ) async throws {
        var logger = logger
        logger[metadataKey: "schedule"] = .string(job.name)
        let term = leadership.term
        try await term.prepareSchedule(stateName)
        let triggers = try await term.triggers(stateName)
        let manual = Counter(
            label: WarrenMetric.scheduledRuns.name, dimensions: [("schedule", job.name), ("outcome", "manual")])
        do {
            while let trigger = try await triggers.next() {
                if let problem = trigger.problem {
                    logger.warning(
                        "a request for a run now is not one; dropped", metadata: ["reason": .string(problem)])
                    try await trigger.done()
                    continue
                }
                let now = Date()
                let headers: AMQPTable = [
                    ScheduleHeader.schedule: .string(job.name),
                    ScheduleHeader.scheduledFor: .int64(Int64((now.timeIntervalSince1970 * 1000).rounded(.down))),
                    ScheduleHeader.manual: .bool(true),
                ]
                let messageID = RecurringJob.manualMessageID(name: job.name, requestID: trigger.requestID)
                do {
                    try await term.publish(try job.makeMessage(leadership.builder, now, headers, messageID))
                } catch {
                    // Not run: the request goes back to wait for the next try (or the next leader).
                    await trigger.giveBack()
                    throw error
                }
                try await trigger.done()
                manual.increment()
                logger.notice(
                    "run published on request",
                    metadata: [
                        "message_id": .string(messageID), "queue": .string(job.queue),
                        "requested_by": .string(trigger.requestedBy ?? "unknown"),
                    ])
            }
        } catch {
            await triggers.close()
            throw error
        }
        await triggers.close()
    }

    /// Publishes `job`'s runs while `leadership` holds.
    private static func tick(
        _ job: RecurringJob, stateName: String, leadership: Leadership, transport: any WarrenTransport,
        board: ScheduleBoard, logger: Logger
    ) async throws {
        var logger = logger
        logger[metadataKey: "schedule"] = .string(job.name)
        let term = leadership.term
        // The queue the runs go to exists before the first tick (a run to a missing queue is refused as unroutable).
        try await transport.start()
        try await transport.prepare(queue: job.queue, delays: [])
        try await term.prepareSchedule(stateName)
        let state = try await term.scheduleState(stateName)
        let now = Self.nowSeconds()
        var last = state.lastTick.map { $0.floorDivided(by: 1000) } ?? now
        if last > now + 60 || last < 0 {
            // A clock far ahead on the host of a previous leader (or a forged record) must not stop the schedule.
            logger.warning(
                "the last recorded tick is in the future or before 1970; going on from now",
                metadata: ["last_tick_ms": .stringConvertible(state.lastTick ?? 0)])
            last = now
        }
        logger.info(
            "schedule led",
            metadata: [
                "schedule_spec": .string(job.schedule.description), "missed_ticks": .string(job.missedTicks.name),
                "last_tick": .string(state.lastTick == nil ? "none" : Self.iso(last)),
            ])
        let published = Counter(
            label: WarrenMetric.scheduledRuns.name, dimensions: [("schedule", job.name), ("outcome", "published")])
        let skipped = Counter(
            label: WarrenMetric.scheduledRuns.name, dimensions: [("schedule", job.name), ("outcome", "skipped_paused")])
        let missed = Counter(
            label: WarrenMetric.scheduledRuns.name, dimensions: [("schedule", job.name), ("outcome", "missed")])
        await board.update(
            ScheduleDirectory.Entry(
                job: job, stateName: stateName, lastTickMs: state.lastTick == nil ? nil : last * 1000,
                paused: state.paused))
        while true {
            try Task.checkCancellation()
            let now = Self.nowSeconds()
            let due = job.dueTicks(after: last, now: now)
            guard let latest = due.latest else {
                guard let next = job.schedule.nextFireTime(after: max(last, now)) else {
                    logger.warning("the schedule has no further tick within thirty years")
                    return
                }
                try await Self.sleep(untilUnixSeconds: next)
                continue
            }
            if due.missed > 0 {
                missed.increment(by: due.missed)
                logger.warning(
                    "ticks missed",
                    metadata: [
                        "missed": .stringConvertible(due.missed), "policy": .string(job.missedTicks.name),
                        "through": .string(Self.iso(latest)),
                    ])
            }
            let paused = try await term.isPaused(stateName)
            if paused {
                try await term.publishTick(nil, schedule: stateName, scheduledFor: latest * 1000)
                skipped.increment(by: due.runs.count)
                logger.info("tick skipped: the schedule is paused", metadata: ["scheduled_for": .string(iso(latest))])
            } else {
                for run in due.runs {
                    let scheduledFor = Date(timeIntervalSince1970: TimeInterval(run))
                    let headers: AMQPTable = [
                        ScheduleHeader.schedule: .string(job.name), ScheduleHeader.scheduledFor: .int64(run * 1000),
                    ]
                    let message = try job.makeMessage(leadership.builder, scheduledFor, headers, nil)
                    try await term.publishTick(message, schedule: stateName, scheduledFor: run * 1000)
                    published.increment()
                    logger.info(
                        "run published",
                        metadata: [
                            "scheduled_for": .string(iso(run)),
                            "message_id": .string(message.properties.messageID ?? ""),
                            "queue": .string(job.queue),
                        ])
                }
                if due.runs.last != latest {
                    try await term.publishTick(nil, schedule: stateName, scheduledFor: latest * 1000)
                }
            }
            last = latest
            await board.update(
                ScheduleDirectory.Entry(job: job, stateName: stateName, lastTickMs: latest * 1000, paused: paused))
        }
    }

    static func nowSeconds() -> Int64 { Int64(Date().timeIntervalSince1970.rounded(.down)) }

    static func iso(_ seconds: Int64) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
    }

    /// Sleeps until the wall clock reads `seconds` (re-checking it: the monotonic clock and the wall clock drift).
    private static func sleep(untilUnixSeconds seconds: Int64) async throws {
        while true {
            let remaining = TimeInterval(seconds) - Date().timeIntervalSince1970
            if remaining <= 0 { return }
            try await Task.sleep(for: .milliseconds(Int64((remaining * 1000).rounded(.up))))
        }
    }
}

/// The leader's directory of its schedules (``ScheduleDirectory``): each job's entry as its ticks change it, published
/// whole after each change, one publish at a time so that the newest is the one the queue keeps.
///
/// It is for operators only: a directory that cannot be written (its queue deleted or declared otherwise) is logged
/// once per term and tried again at the next change; it never stops a schedule.
final class ScheduleBoard: Sendable {
    private let scope: String?
    private let since: Date
    private let term: any LeadershipTerm
    private let logger: Logger
    /// Looked up once: `hostName` may ask the resolver.
    private let host = ProcessInfo.processInfo.hostName
    private let entries = Mutex<[String: ScheduleDirectory.Entry]>([:])
    private let publishing = AsyncMutex()
    private let failing = Atomic<Bool>(false)

    init(scope: String?, since: Date, term: any LeadershipTerm, logger: Logger) {
        self.scope = scope
        self.since = since
        self.term = term
        self.logger = logger
    }

    func update(_ entry: ScheduleDirectory.Entry) async {
        entries.withLock { $0[entry.name] = entry }
        await publishing.withLock {
            let now = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
            let directory = ScheduleDirectory(
                scope: scope, leaderHost: host,
                leaderSinceMs: Int64((since.timeIntervalSince1970 * 1000).rounded(.down)), updatedAtMs: now,
                schedules: entries.withLock { $0.values.sorted { $0.name < $1.name } })
            do {
                try await term.publishDirectory(directory, to: ScheduleDirectory.queue(scope: scope))
                if failing.exchange(false, ordering: .relaxed) {
                    logger.notice("the schedules' directory is written again")
                }
            } catch {
                if term.isHeld, !failing.exchange(true, ordering: .relaxed) {
                    logger.warning(
                        "the schedules' directory could not be written (operators see an old one); the schedules go on",
                        metadata: ["queue": .string(ScheduleDirectory.queue(scope: scope)), "error": "\(error)"])
                }
            }
        }
    }
}
