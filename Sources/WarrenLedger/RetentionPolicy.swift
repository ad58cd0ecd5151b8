import Foundation
import Warren

/// How long the ledger keeps a job (its row, events and dead letter), by how it ended, and how many at most.
/// A ``Ledger`` prunes in the background every ``interval``.
public struct RetentionPolicy: Sendable, Equatable {
    /// Jobs that succeeded, after their last event.
    public var succeeded: Duration
    /// Jobs that were dead-lettered (and not replayed since), after their last event.
    public var deadLettered: Duration
    /// Jobs in any other state (pending, running, retrying, replayed: usually work whose last events never came),
    /// after their last event.
    public var unfinished: Duration
    /// The most jobs kept: past it, the oldest go first, whatever their state. `nil`: no bound.
    public var maxJobs: Int?
    /// Time between two prunings.
    public var interval: Duration
    /// Entries of the audit log (replays, purges, refusals), after they were written.
    public var audit: Duration

    /// - Parameters: see the properties; by default successes 7 days, dead letters 30, unfinished jobs 30, at most
    ///   10 million jobs, audit entries 365 days, pruned every minute.
    public init(
        succeeded: Duration = .seconds(7 * 86_400), deadLettered: Duration = .seconds(30 * 86_400),
        unfinished: Duration = .seconds(30 * 86_400), maxJobs: Int? = 10_000_000,
        audit: Duration = .seconds(365 * 86_400),
        interval: Duration = .seconds(60)
    ) {
        self.audit = audit
        self.succeeded = succeeded
        self.deadLettered = deadLettered
        self.unfinished = unfinished
        self.maxJobs = maxJobs
        self.interval = interval
    }

    /// Keeps everything; never prunes.
    public static let keepEverything = RetentionPolicy(
        succeeded: .seconds(Int64.max / 4), deadLettered: .seconds(Int64.max / 4), unfinished: .seconds(Int64.max / 4),
        maxJobs: nil, audit: .seconds(Int64.max / 4), interval: .seconds(Int64.max / 4))

    /// The cut-off times (milliseconds since 1970) for each kind of job at `nowMs`: older jobs go.
    func cutoffs(nowMs: Int64) -> (succeeded: Int64, deadLettered: Int64, unfinished: Int64, audit: Int64) {
        func cutoff(_ age: Duration) -> Int64 {
            let ms = age.components.seconds.multipliedReportingOverflow(by: 1000)
            let cut = nowMs.subtractingReportingOverflow(ms.partialValue)
            return ms.overflow || cut.overflow ? Int64.min : cut.partialValue
        }
        return (cutoff(succeeded), cutoff(deadLettered), cutoff(unfinished), cutoff(audit))
    }
}

/// What one pruning removed.
public struct PruneResult: Sendable, Equatable {
    public var jobs: Int
    public var events: Int
    /// Audit log entries.
    public var auditEntries: Int

    public init(jobs: Int = 0, events: Int = 0, auditEntries: Int = 0) {
        self.jobs = jobs
        self.events = events
        self.auditEntries = auditEntries
    }
}
