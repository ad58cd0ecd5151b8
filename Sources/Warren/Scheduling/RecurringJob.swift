import Foundation

/// What a schedule's leader does with ticks it finds overdue — after downtime, a leader change or a pause of the
/// process — more than ``RecurringJob/misfireThreshold`` late.
public enum MissedTickPolicy: Sendable, Hashable {
    /// None of them runs: the schedule goes on with the next tick.
    case skip
    /// One run stands for all of them: the most recent missed tick's.
    case runOnce
    /// Each runs, oldest first — at most `limit` of them (the most recent), the older ones are skipped.
    case runAll(limit: Int)

    /// ``runAll(limit:)`` with a limit of 100.
    public static let runAll = MissedTickPolicy.runAll(limit: 100)

    /// `skip`, `run_once` or `run_all`, as logs and the JSON APIs name it.
    public var name: String {
        switch self {
        case .skip: "skip"
        case .runOnce: "run_once"
        case .runAll: "run_all"
        }
    }
}

/// A job that runs on a schedule: a message published to a queue at each tick by the ``Scheduler``'s leader, and
/// handled by whichever worker consumes that queue — with the retries, dead letters, metrics, traces and ledger rows
/// of any job.
///
/// Each run's message id is `<name>@<scheduled time, ISO 8601 UTC>` (e.g. `cleanup@2026-12-07T14:00:10Z`), the same
/// whichever process publishes it, so a worker with an ``IdempotencyStore`` drops a tick that reached it twice. Its
/// headers carry the schedule's name (``ScheduleHeader/schedule``) and the time it was due
/// (``ScheduleHeader/scheduledFor``); ``MessageContext/schedule`` reads them.
public struct RecurringJob: Sendable {
    /// The schedule's name: 1–120 letters, digits, `.`, `_`, `-`; unique among a broker's schedules.
    public let name: String
    public let schedule: Schedule
    /// The queue each run's message goes to (a worker's queue).
    public let queue: String
    public let missedTicks: MissedTickPolicy
    /// How late a tick may be published and still count as on time (not missed). Default one minute.
    public let misfireThreshold: Duration
    /// The message's AMQP `type`.
    public let messageType: String
    /// The run due at `scheduledFor`, with the message id given, or the tick's (``messageID(name:scheduledFor:)``).
    let makeMessage:
        @Sendable (_ builder: WarrenPublisher, _ scheduledFor: Date, _ headers: AMQPTable, _ messageID: String?) throws
            ->
            OutboundMessage

    /// - Parameters:
    ///   - name: the schedule's name (part of queue names and message ids).
    ///   - queue: where each run's message goes.
    ///   - missedTicks: what to do with ticks missed by more than `misfireThreshold`.
    ///   - message: the message of the run due at the given time.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for a name out of those characters, an empty queue name, a
    ///   `runAll` limit below 1, or a negative threshold.
    public init<M: WarrenMessage>(
        _ name: String, schedule: Schedule, queue: String, missedTicks: MissedTickPolicy = .runOnce,
        misfireThreshold: Duration = .seconds(60), message: @escaping @Sendable (_ scheduledFor: Date) -> M
    ) throws(WarrenError) {
        try LeadershipNames.check(name, as: "a schedule's name")
        guard !queue.isEmpty, queue.utf8.count <= 255 else {
            throw WarrenError(.invalidConfiguration, "schedule '\(name)' needs a queue name of 1–255 bytes")
        }
        if case .runAll(let limit) = missedTicks, limit < 1 {
            throw WarrenError(.invalidConfiguration, "schedule '\(name)': run_all needs a limit of at least 1")
        }
        guard misfireThreshold >= .zero else {
            throw WarrenError(.invalidConfiguration, "schedule '\(name)': the misfire threshold cannot be negative")
        }
        self.name = name
        self.schedule = schedule
        self.queue = queue
        self.missedTicks = missedTicks
        self.misfireThreshold = misfireThreshold
        self.messageType = M.messageType
        self.makeMessage = { builder, scheduledFor, headers, messageID in
            try builder.outboundMessage(
                message(scheduledFor), to: .queue(queue),
                messageID: messageID ?? RecurringJob.messageID(name: name, scheduledFor: scheduledFor), headers: headers
            )
        }
    }

    /// The message id of a run an operator asked for (request `requestID`): `<name>@manual-<request id>`, which no
    /// tick's id can be.
    public static func manualMessageID(name: String, requestID: String) -> String { "\(name)@manual-\(requestID)" }

    /// The message id of schedule `name`'s run due at `scheduledFor`: `<name>@<ISO 8601 UTC, seconds>`.
    public static func messageID(name: String, scheduledFor: Date) -> String {
        "\(name)@\(scheduledFor.formatted(.iso8601))"
    }

    /// Which ticks of `(after, now]` to publish, by the policy: the missed ones it keeps, then those on time.
    /// `latest` is the last tick of the span (to record even when nothing runs); `missed` counts the ticks dropped
    /// (for a cron schedule down for long, those within the window walked: older ones are not counted).
    ///
    /// Only a window ending now is walked — the ticks on time and enough missed ones for the policy — so a long
    /// outage of a per-second schedule costs no more than a short one.
    func dueTicks(after last: Int64, now: Int64) -> (runs: [Int64], latest: Int64?, missed: Int) {
        guard now > last else { return ([], nil, 0) }
        let threshold = misfireThreshold.components.seconds
        let keep: Int =
            switch missedTicks {
            case .skip: 0
            case .runOnce: 1
            case .runAll(let limit): limit
            }
        var span = threshold + 3600
        var walk = self.walk(from: max(last, now - span), through: now, threshold: threshold, keep: keep)
        // Wider windows until the policy has the missed ticks it keeps, or the window reaches back to `last` (or
        // four centuries, far beyond a schedule's thirty-year horizon).
        while walk.start > last, walk.missed < keep, span < 12_700_000_000 {
            span *= 2
            walk = self.walk(from: max(last, now - span), through: now, threshold: threshold, keep: keep)
        }
        var older = 0
        if walk.start > last, case .interval(let interval) = schedule.kind {
            older = Int(walk.start.floorDivided(by: interval) - last.floorDivided(by: interval))
        }
        return (walk.kept + walk.onTime, walk.latest, walk.missed - walk.kept.count + older)
    }

    /// The ticks of `(start, now]`: the most recent `keep` of those more than `threshold` late, and those on time.
    private func walk(from start: Int64, through now: Int64, threshold: Int64, keep: Int) -> (
        start: Int64, kept: [Int64], onTime: [Int64], missed: Int, latest: Int64?
    ) {
        var kept: [Int64] = []
        var onTime: [Int64] = []
        var missed = 0
        var latest: Int64?
        var cursor = start
        // A bound on the walk whatever the schedule: a per-second one has 3,660 ticks in the first window.
        var walked = 0
        while walked < 2_000_000, let tick = schedule.nextFireTime(after: cursor), tick <= now {
            walked += 1
            cursor = tick
            latest = tick
            if now - tick <= threshold {
                onTime.append(tick)
            } else {
                missed += 1
                if keep > 0 {
                    kept.append(tick)
                    if kept.count > keep { kept.removeFirst() }
                }
            }
        }
        return (start, kept, onTime, missed, latest)
    }
}
