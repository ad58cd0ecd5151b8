import WarrenAMQP

/// One process's time as the leader of an election, as a transport holds it: ``LeaderElection`` asks the transport
/// for one (``WarrenTransport/campaign(for:)``) and gives it up with ``resign()``.
///
/// What a term publishes is fenced: it goes out on the term's own link to the broker (for RabbitMQ, a connection that
/// never reconnects), so a leader that lost its term — frozen past its heartbeats, cut off — cannot get a message out
/// with it any more. The broker decides when a term ends, not the leader's clock.
@_spi(WarrenTransport)
public protocol LeadershipTerm: Sendable {
    /// Returns when the term has ended: resigned, its connection lost or closed by the broker.
    func waitUntilEnded() async
    /// Whether the term still holds, as far as this process knows (the broker may have ended it already; a fenced
    /// publish finds out).
    var isHeld: Bool { get }
    /// Publishes `message` on the term's own link and returns once the broker confirmed it.
    /// - Throws: when the term has ended (the message did not go out with this term), or the broker refused it.
    func publish(_ message: OutboundMessage) async throws
    /// Ends the term (idempotent); another process's campaign can then win.
    func resign() async

    /// Makes sure the schedule `name`'s state exists on the broker (where its last tick and its pause flag are kept).
    func prepareSchedule(_ name: String) async throws
    /// The state of the schedule `name` that the terms before this one left, for its next tick.
    func scheduleState(_ name: String) async throws -> ScheduleState
    /// Whether an operator paused the schedule `name` now (what the leader asks before each tick).
    func isPaused(_ name: String) async throws -> Bool
    /// Publishes a tick of schedule `name` — `message` goes to its queue — and records `scheduledFor` (Unix ms) as its
    /// last tick in the same step, so that the next leader neither repeats nor loses it. With `message` `nil`, only
    /// records the tick (a tick skipped while paused).
    func publishTick(_ message: OutboundMessage?, schedule name: String, scheduledFor: Int64) async throws
    /// The requests for a run of schedule `name` now (an operator's "trigger"), while the term lasts.
    func triggers(_ name: String) async throws -> ScheduleTriggers
    /// Replaces the scheduler's directory (``ScheduleDirectory``) in `queue` with `directory`.
    func publishDirectory(_ directory: ScheduleDirectory, to queue: String) async throws
}

/// What a schedule's previous leaders left for the next one.
@_spi(WarrenTransport)
public struct ScheduleState: Sendable, Equatable {
    /// The last tick published (or skipped while paused), as Unix milliseconds; `nil` before the first.
    public var lastTick: Int64?
    /// Whether an operator paused the schedule.
    public var paused: Bool

    public init(lastTick: Int64?, paused: Bool) {
        self.lastTick = lastTick
        self.paused = paused
    }
}

extension WarrenError {
    /// A term's leadership has ended: what it would publish does not go out.
    static func leadershipEnded(_ election: String) -> WarrenError {
        WarrenError(.leadershipLost, "the leadership of '\(election)' has ended")
    }
}

/// Names of what elections and schedules keep on the broker.
enum LeadershipNames {
    /// The queue whose exclusive consumer is the leader of `election`.
    static func electionQueue(_ election: String) -> String { "warren.leader.\(election)" }
    /// The queue that keeps the last tick of schedule `name` (at most one message).
    static func lastTickQueue(_ name: String) -> String { "warren.schedule.\(name).last" }
    /// The queue whose one message, when there is one, pauses schedule `name`.
    static func pauseQueue(_ name: String) -> String { "warren.schedule.\(name).paused" }
    /// The queue of requests for a run of schedule `name` now.
    static func triggerQueue(_ name: String) -> String { "warren.schedule.\(name).trigger" }

    /// Throws ``WarrenError/Code/invalidConfiguration`` unless `name` ``isValid(_:)``; `what` names it in the error
    /// ("a schedule's name").
    static func check(_ name: String, as what: String) throws(WarrenError) {
        guard isValid(name) else {
            throw WarrenError(.invalidConfiguration, "\(what) must be 1–120 of [A-Za-z0-9._-]: '\(name)'")
        }
    }

    /// Whether `name` is fit for an election's or a schedule's name (or, up to 200, an ordered flow's): 1–120
    /// characters of letters, digits, `.`, `_`, `-` (it becomes part of queue names).
    static func isValid(_ name: String, maximumBytes: Int = 120) -> Bool {
        !name.isEmpty && name.utf8.count <= maximumBytes
            && name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == 0x2E || byte == 0x5F || byte == 0x2D
            }
    }
}

/// Headers a scheduled run carries.
public enum ScheduleHeader {
    /// The schedule's name.
    public static let schedule = "x-warren-schedule"
    /// The time the run was due, Unix milliseconds (`int64`).
    public static let scheduledFor = "x-warren-scheduled-for"
    /// `true` on a run an operator started by hand.
    public static let manual = "x-warren-schedule-manual"
}
