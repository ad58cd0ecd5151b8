import Foundation
import WarrenAMQP

/// How a message due at a time waits on RabbitMQ, with no plugin: a cascade of 26 delay levels, each a topic exchange
/// and a queue whose `x-message-ttl` is 2^level seconds (level 0 holds a message 1 s, level 25 about 388 days).
///
/// A message due in `n` seconds (rounded up) is published to the top level's exchange with a routing key that spells
/// `n` in binary, highest level first, followed by its queue: `0.0.….1.0.1.orders` waits 4 s + 1 s. At each level a
/// `1` routes it into the level's queue, where it waits out the TTL and is dead-lettered to the next level's exchange;
/// a `0` routes it straight on. After level 0 the delivery exchange hands it to its queue. So any delay up to
/// ``maximumDelay`` (2^26 − 1 s, 776 days) passes through at most 26 queues, which never hold different delays —
/// RabbitMQ expires a message only at the head of its queue — and the broker keeps 27 queues and 28 exchanges however
/// many delays are in flight.
///
/// Precision: a message reaches its queue no earlier than its due time and at most about one second later (its delay
/// is rounded up to whole seconds), plus the broker's time to move it through the levels (milliseconds), plus the time
/// a connection outage holds the publish. A message due now or in the past goes straight to its queue.
public struct DelayCascade: Sendable, Hashable {
    /// How many levels: 2^26 − 1 s covers two years with room to spare.
    public static let levelCount = 26
    /// The longest delay the levels can hold: 2^26 − 1 s (about 776 days).
    public static let maximumDelay = Duration.seconds((1 << levelCount) - 1)

    /// The start of every exchange's and queue's name: `<prefix>.<level>` for the levels, `<prefix>.deliver` for
    /// the exchange that hands messages to their queues, `<prefix>.unrouted` for messages whose queue no longer
    /// exists when they are due (they are kept there rather than dropped).
    public let prefix: String
    /// How many times faster than a second one step of level 0 runs: 1 in production; a test's levels with 1,000
    /// hold level 0 for a millisecond, so a job due in 1 h 17 min arrives after 4.62 s.
    public let speedUp: Int

    /// The levels under `prefix` (one cascade serves every queue of a virtual host).
    public init(prefix: String = "warren.due") {
        self.prefix = prefix
        self.speedUp = 1
    }

    /// Levels that run `speedUp` times faster than real time, under a prefix of their own: for tests of long delays.
    /// `speedUp` is at least 1 and at most 1,000.
    @_spi(WarrenTransport)
    public init(prefix: String, speedUp: Int) {
        self.prefix = prefix
        self.speedUp = min(max(speedUp, 1), 1000)
    }

    /// The exchange of `level` (0 ..< ``levelCount``), and the queue that holds its messages.
    public func level(_ level: Int) -> String { "\(prefix).\(level)" }
    /// The exchange a message enters by: the top level's.
    public var entryExchange: String { level(Self.levelCount - 1) }
    /// The exchange that hands a message whose delay is over to its queue.
    public var deliveryExchange: String { "\(prefix).deliver" }
    /// The alternate exchange and queue of the delivery exchange: what is due for a queue that is gone.
    public var unroutedQueue: String { "\(prefix).unrouted" }

    /// How long `level`'s queue holds a message, in milliseconds.
    public func holdMilliseconds(ofLevel level: Int) -> Int64 {
        (Int64(1) << Int64(level)) * 1000 / Int64(speedUp)
    }

    /// The whole seconds a message due after `delay` waits: `delay` rounded up, at least 0.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` when `delay` exceeds ``maximumDelay``.
    public static func steps(for delay: Duration) throws -> Int64 {
        guard delay > .zero else { return 0 }
        guard delay <= maximumDelay else {
            throw WarrenError(
                .invalidConfiguration,
                "a message can be due at most \(maximumDelay.components.seconds) s (776 days) ahead; asked for "
                    + "\(delay.components.seconds) s")
        }
        let (seconds, attoseconds) = delay.components
        return seconds + (attoseconds > 0 ? 1 : 0)
    }

    /// The whole seconds from now until `dueTime`, for a message into `queue`.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` when `queue` cannot be a due destination
    ///   (``problem(withQueue:)``) or `dueTime` is more than ``maximumDelay`` ahead.
    static func steps(toQueue queue: String, at dueTime: Date, now: Date = Date()) throws -> Int64 {
        if let problem = problem(withQueue: queue) { throw WarrenError(.invalidConfiguration, problem) }
        let seconds = dueTime.timeIntervalSince(now)
        guard seconds.isFinite else { throw WarrenError(.invalidConfiguration, "a due time must be a finite date") }
        guard seconds > 0 else { return 0 }
        guard seconds <= Double(maximumDelay.components.seconds) + 1 else {
            throw WarrenError(
                .invalidConfiguration,
                "a message can be due at most \(maximumDelay.components.seconds) s (776 days) ahead; asked for "
                    + "\(Int64(seconds.rounded(.up))) s")
        }
        return try steps(for: .seconds(seconds))
    }

    /// The routing key that takes a message through the levels that add up to `steps` seconds into `queue`.
    /// - Precondition: `0 ≤ steps < 2^26`.
    public static func routingKey(steps: Int64, queue: String) -> String {
        var words: [String] = []
        words.reserveCapacity(levelCount + 1)
        for level in stride(from: levelCount - 1, through: 0, by: -1) {
            words.append(steps & (Int64(1) << Int64(level)) == 0 ? "0" : "1")
        }
        words.append(queue)
        return words.joined(separator: ".")
    }

    /// The levels a message of `steps` seconds waits in, highest first.
    public static func levels(steps: Int64) -> [Int] {
        stride(from: levelCount - 1, through: 0, by: -1).filter { steps & (Int64(1) << Int64($0)) != 0 }
    }

    /// The binding key of `level` that matches a `bit` (`"1"` into the level's queue, `"0"` on to the next level).
    static func bindingKey(level: Int, bit: Character) -> String {
        String(repeating: "*.", count: levelCount - 1 - level) + "\(bit).#"
    }

    /// The delivery exchange's binding key for `queue`: its 26 bits, then exactly its name.
    static func deliveryKey(queue: String) -> String {
        String(repeating: "*.", count: levelCount) + queue
    }

    /// Why `queue` cannot be a message's due destination, or `nil`: its routing key must fit AMQP's 255 bytes, and
    /// none of its dot-separated words may be a topic wildcard (`*`, `#`), which would match other queues' keys.
    public static func problem(withQueue queue: String) -> String? {
        if queue.isEmpty { return "a due message needs a queue" }
        if queue.utf8.count > 255 - 2 * levelCount {
            return
                "the queue name '\(queue.prefix(40))…' is longer than the \(255 - 2 * levelCount) bytes a due message's routing key leaves it"
        }
        if queue.split(separator: ".", omittingEmptySubsequences: false).contains(where: { $0 == "*" || $0 == "#" }) {
            return "the queue name '\(queue)' has a word '*' or '#', which a topic exchange reads as a wildcard"
        }
        return nil
    }
}
