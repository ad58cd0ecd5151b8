import Foundation
import Synchronization
import WarrenAMQP

/// What a scheduler's leader says of its schedules, for operators: which process leads, and each recurring job's
/// schedule, last tick and next run. The leader keeps it in the one-message queue `warren.schedules` (or
/// `warren.schedules.<scope>`), replaced when it starts leading and after every tick; the dashboard and
/// `warren schedules` read it (``RabbitMQTransport/scheduleDirectory(scope:)``). JSON in snake_case.
public struct ScheduleDirectory: Codable, Sendable, Equatable {
    /// The scheduler's scope (``Scheduler``), `nil` for the unscoped one.
    public var scope: String?
    /// The host name of the process that leads.
    public var leaderHost: String
    /// Since when it leads, and when it wrote this, in milliseconds since 1970.
    public var leaderSinceMs: Int64
    public var updatedAtMs: Int64
    public var schedules: [Entry]

    /// One recurring job.
    public struct Entry: Codable, Sendable, Equatable {
        /// The job's name (``RecurringJob/name``).
        public var name: String
        /// The name its state is kept under on the broker (`<scope>.<name>`, or the name): what pausing, resuming and
        /// triggering take.
        public var stateName: String
        /// `cron` or `interval`.
        public var kind: String
        /// The cron expression (for `cron`).
        public var expression: String?
        /// The interval in seconds (for `interval`).
        public var intervalSeconds: Int64?
        /// The IANA time zone a cron expression is read in.
        public var timeZone: String
        /// The queue its runs go to.
        public var queue: String
        /// `skip`, `run_once` or `run_all`.
        public var missedTicks: String
        /// The last tick published (or skipped while paused), and the next one, in milliseconds since 1970.
        public var lastTickMs: Int64?
        public var nextRunMs: Int64?
        /// Whether an operator paused it: read from its pause queue by whoever reads the directory (the leader's word
        /// may be a tick old).
        public var paused: Bool

        enum CodingKeys: String, CodingKey {
            case name, kind, expression, queue, paused
            case stateName = "state_name"
            case intervalSeconds = "interval_seconds"
            case timeZone = "time_zone"
            case missedTicks = "missed_ticks"
            case lastTickMs = "last_tick_ms"
            case nextRunMs = "next_run_ms"
        }

        init(job: RecurringJob, stateName: String, lastTickMs: Int64?, paused: Bool) {
            self.name = job.name
            self.stateName = stateName
            if let expression = job.schedule.cronExpression {
                (kind, self.expression, intervalSeconds) = ("cron", expression, nil)
            } else {
                (kind, self.expression) = ("interval", nil)
                intervalSeconds = job.schedule.interval?.components.seconds
            }
            timeZone = job.schedule.timeZoneIdentifier
            queue = job.queue
            missedTicks = job.missedTicks.name
            self.lastTickMs = lastTickMs
            self.paused = paused
            nextRunMs = Self.nextRun(of: job, after: lastTickMs)
        }

        /// The first tick after the last one and now.
        static func nextRun(of job: RecurringJob, after lastTickMs: Int64?) -> Int64? {
            let now = Date().timeIntervalSince1970
            let after = max(now, lastTickMs.map { TimeInterval($0) / 1000 } ?? now)
            return job.schedule.nextFireTime(after: Date(timeIntervalSince1970: after)).flatMap(UnixMilliseconds.from)
        }
    }

    enum CodingKeys: String, CodingKey {
        case scope, schedules
        case leaderHost = "leader_host"
        case leaderSinceMs = "leader_since_ms"
        case updatedAtMs = "updated_at_ms"
    }

    public init(scope: String?, leaderHost: String, leaderSinceMs: Int64, updatedAtMs: Int64, schedules: [Entry]) {
        self.scope = scope
        self.leaderHost = leaderHost
        self.leaderSinceMs = leaderSinceMs
        self.updatedAtMs = updatedAtMs
        self.schedules = schedules
    }

    /// The queue that keeps the directory of the scheduler of `scope`.
    public static func queue(scope: String?) -> String { scope.map { "warren.schedules.\($0)" } ?? "warren.schedules" }

    /// The most jobs a scheduler holds, and a reader lists.
    public static let maximumSchedules = 1_000

    /// The largest directory read: a body above it is not decoded.
    static let maximumBytes = 4 << 20
}

/// A request for a run now, as the leader takes it from a schedule's trigger queue.
@_spi(WarrenTransport)
public struct ScheduleTrigger: Sendable {
    /// The request's id (the run's message id is `<name>@manual-<request id>`).
    public var requestID: String
    /// Who asked (an operator's name), when the request says.
    public var requestedBy: String?
    /// Why the request cannot be served (its body is not a request), or `nil`: such a request is settled unserved.
    public var problem: String?
    /// Settles the request once its run is confirmed; a request not settled when the term ends comes back to the next
    /// leader, which publishes the same message id again.
    public var done: @Sendable () async throws -> Void
    /// Returns the request to its queue unserved (its run could not be published), to be taken again.
    public var giveBack: @Sendable () async -> Void

    public init(
        requestID: String, requestedBy: String?, problem: String? = nil,
        done: @escaping @Sendable () async throws -> Void, giveBack: @escaping @Sendable () async -> Void = {}
    ) {
        self.requestID = requestID
        self.requestedBy = requestedBy
        self.problem = problem
        self.done = done
        self.giveBack = giveBack
    }

    /// The request a message's body holds, or one with its ``problem``.
    static func decode(
        _ body: [UInt8], done: @escaping @Sendable () async throws -> Void,
        giveBack: @escaping @Sendable () async -> Void
    ) -> ScheduleTrigger {
        guard body.count <= 4_096 else {
            return ScheduleTrigger(
                requestID: "", requestedBy: nil, problem: "a request of \(body.count) bytes", done: done,
                giveBack: giveBack)
        }
        guard let request = try? JSONDecoder().decode(Body.self, from: Data(body)) else {
            return ScheduleTrigger(
                requestID: "", requestedBy: nil, problem: "not a JSON {\"request_id\": …} request", done: done,
                giveBack: giveBack)
        }
        guard isValidRequestID(request.requestID) else {
            return ScheduleTrigger(
                requestID: "", requestedBy: nil, problem: "a request id must be 1–64 of [A-Za-z0-9._-]", done: done,
                giveBack: giveBack)
        }
        return ScheduleTrigger(
            requestID: request.requestID, requestedBy: request.requestedBy.map { String($0.prefix(200)) }, done: done,
            giveBack: giveBack)
    }

    /// The body of a request: JSON `{"request_id": …, "requested_by": …}`.
    struct Body: Codable {
        var requestID: String
        var requestedBy: String?
        enum CodingKeys: String, CodingKey {
            case requestID = "request_id"
            case requestedBy = "requested_by"
        }
    }

    /// Whether `id` is fit for a request id (it becomes part of a message id): 1–64 of `A-Z a-z 0-9 . _ -`.
    static func isValidRequestID(_ id: String) -> Bool { id.utf8.count <= 64 && LeadershipNames.isValid(id) }
}

/// The requests for a run now of one schedule, in order, while the term lasts.
@_spi(WarrenTransport)
public struct ScheduleTriggers: Sendable {
    let nextTrigger: @Sendable () async throws -> ScheduleTrigger?
    let closeTriggers: @Sendable () async -> Void

    public init(
        next: @escaping @Sendable () async throws -> ScheduleTrigger?, close: @escaping @Sendable () async -> Void = {}
    ) {
        self.nextTrigger = next
        self.closeTriggers = close
    }

    /// The next request; `nil` when there will be none (the term ended).
    public func next() async throws -> ScheduleTrigger? { try await nextTrigger() }

    /// Stops taking requests: one taken and not settled goes back to its queue.
    public func close() async { await closeTriggers() }
}
