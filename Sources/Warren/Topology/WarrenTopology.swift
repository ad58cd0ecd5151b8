import Foundation
import WarrenAMQP

/// The names and queues Warren declares for a work queue. Documented in `docs/retries-and-dead-letters.md`.
///
/// For a work queue `Q`:
/// - `Q` itself, durable;
/// - one delay queue `Q.retry.<ms>ms` per distinct retry delay, with a queue-level `x-message-ttl` of that many
///   milliseconds and `x-dead-letter-exchange: ""` / `x-dead-letter-routing-key: Q`, so a message waits there
///   and then returns to `Q` (a queue-level TTL never blocks the head of the line the way per-message TTLs do);
/// - the dead-letter exchange `warren.dead-letters` (direct, durable), shared by all work queues, and the queue
///   `Q.dead-letters` bound to it with routing key `Q`;
/// - `Q.redelivered`, where messages that came back unsettled more than once wait to be handled one at a time
///   (see ``WorkerConfiguration/redeliveryLimit``).
public struct WarrenTopology: Sendable, Hashable {
    public var queue: String
    /// `classic` or `quorum`.
    public var queueType: QueueType

    public enum QueueType: String, Sendable, Hashable {
        case classic
        case quorum
    }

    /// Every queue Warren declares is durable.
    public init(queue: String, queueType: QueueType = .classic) {
        self.queue = queue
        self.queueType = queueType
    }

    @available(*, deprecated, message: "Warren's queues are always durable: drop the durable argument")
    public init(queue: String, queueType: QueueType = .classic, durable: Bool) {
        self.init(queue: queue, queueType: queueType)
    }

    @available(*, deprecated, message: "Warren's queues are always durable; nothing ever read this")
    public var durable: Bool { true }

    public static let deadLetterExchange = "warren.dead-letters"

    public var deadLetterQueue: String { "\(queue).dead-letters" }

    /// Messages that came back unsettled at least twice (classic queues): the worker consumes this queue with a
    /// prefetch of one, so when such a message crashes its process again, no other message is caught with it.
    public var redeliveredQueue: String { "\(queue).redelivered" }

    /// A queue holding one message, the latest ``TopologyManifest`` of this work queue (`x-max-length: 1`), so
    /// tools such as `warren topology` can find the delay queues without the management API.
    public var manifestQueue: String { "\(queue).topology" }

    public func delayQueue(for delay: Duration) -> String { "\(queue).retry.\(delay.milliseconds)ms" }

    var workQueueArguments: AMQPTable { ["x-queue-type": .string(queueType.rawValue)] }

    /// Of the work queue's type, so that in a cluster it lives as long as the work queue does.
    var manifestQueueArguments: AMQPTable { ["x-queue-type": .string(queueType.rawValue), "x-max-length": .int32(1)] }

    func delayQueueArguments(for delay: Duration) -> AMQPTable {
        [
            "x-queue-type": .string(queueType.rawValue),
            "x-message-ttl": .int64(delay.milliseconds),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": .string(queue),
        ]
    }
}

/// The headers Warren reads and writes. Every one is a long string or a 64-bit integer.
public enum WarrenHeader {
    /// The message type, for publishers that cannot set the AMQP `type` property (such as `amqp-publish`); read only
    /// when `type` is absent.
    public static let messageType = "x-warren-type"
    /// When a ``WarrenPublisher`` published the message, ms since the epoch (the AMQP timestamp has whole seconds only).
    public static let publishedAt = "x-warren-published-at"
    /// When a message published due at a time (``Destination/due(queue:at:)``) is due, in milliseconds since 1970.
    public static let dueAt = "x-warren-due-at"
    /// A replayed dead letter's first ``publishedAt``: a replay starts the queue-wait clock again.
    public static let originalPublishedAt = "x-warren-original-published-at"
    /// On a replayed copy: the id of the replay request that sent it (a dashboard's, or `warren dlx replay`'s).
    public static let replayID = "x-warren-replay-id"
    /// The attempt a delivery is (1-based); absent on the first delivery.
    public static let attempt = "x-warren-attempt"
    /// When the message was first enqueued (ms since the epoch), carried across retries.
    public static let firstEnqueuedAt = "x-warren-first-enqueued-at"
    /// When the first and the last attempt failed (ms since the epoch).
    public static let firstFailureAt = "x-warren-first-failure-at"
    public static let lastFailureAt = "x-warren-last-failure-at"
    /// The last failure's error type and message.
    public static let errorType = "x-warren-error-type"
    public static let errorMessage = "x-warren-error-message"
    /// Dead letters only: why (``DeadLetterReason/Kind`` raw value) and where the message came from.
    public static let reason = "x-warren-reason"
    public static let originalExchange = "x-warren-original-exchange"
    public static let originalRoutingKey = "x-warren-original-routing-key"
    public static let originalQueue = "x-warren-original-queue"
    /// Dead letters only: how many attempts were made, and on which host the last one ran.
    public static let attempts = "x-warren-attempts"
    public static let host = "x-warren-host"
    /// Classic queues: how many times the message was delivered without a settlement (the worker counts them, see
    /// ``WorkerConfiguration/redeliveryLimit``). Quorum queues count in the broker's own `x-delivery-count`.
    public static let redeliveries = "x-warren-redeliveries"
    /// What orders a message of an ordered flow (``PartitionedFlow``): the flow's consistent-hash exchange hashes it to
    /// pick the partition. ``WarrenPublisher`` writes it from ``PartitionedMessage/partitionKey``.
    public static let partitionKey = "x-warren-partition-key"
    /// The delivery count a quorum queue adds to a message it delivers again.
    public static let quorumDeliveryCount = "x-delivery-count"
}

/// What Warren declared for a work queue, as JSON in its ``WarrenTopology/manifestQueue``.
public struct TopologyManifest: Codable, Sendable, Equatable {
    public var queue: String
    public var queueType: String
    public var deadLetterExchange: String
    public var deadLetterQueue: String
    /// Delay queues by delay in milliseconds, sorted by delay.
    public var delayQueues: [DelayQueue]
    public var updatedAt: Date

    public struct DelayQueue: Codable, Sendable, Equatable {
        public var name: String
        public var delayMilliseconds: Int64
    }

    /// The manifest as stored: JSON with snake_case keys and ISO 8601 dates.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        return try encoder.encode(self)
    }
}

extension TopologyManifest {
    /// Reads a stored manifest (also one written with camelCase keys, as before snake_case).
    public init(json: Data) throws {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        self = try decoder.decode(Self.self, from: json)
    }
}

extension Dictionary where Key == String, Value == AMQPFieldValue {
    /// `self[name]`, without hashing `name` when there are few headers (a message usually carries one or two): a scan
    /// compares lengths first, then bytes. Used on every delivery for Warren's own headers.
    func header(_ name: String) -> AMQPFieldValue? {
        guard count <= 8 else { return self[name] }
        for (key, value) in self where key == name { return value }
        return nil
    }
}

extension AMQPProperties {
    /// The message's type as Warren routes, logs, counts and records it: the AMQP `type`, or, when that is missing or
    /// empty, Warren's `x-warren-type` header; `nil` when neither names one.
    public var warrenMessageType: String? {
        if let type, !type.isEmpty { return type }
        return headers?.header(WarrenHeader.messageType)?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// Times in milliseconds since 1970 read from what a message carries (a Warren header, the AMQP timestamp): a
/// publisher wrote them, so a value no clock gives is ignored rather than trusted into arithmetic that would trap.
package enum UnixMilliseconds {
    /// What is believed: from 1970 to the end of the year 9999.
    package static let plausible: ClosedRange<Int64> = 0...253_402_300_799_999

    /// `milliseconds` when it is ``plausible``.
    package static func from(_ milliseconds: Int64?) -> Int64? {
        milliseconds.flatMap { plausible.contains($0) ? $0 : nil }
    }

    /// `date` in milliseconds when it is ``plausible`` (an AMQP timestamp may say the year 584 billion).
    package static func from(_ date: Date?) -> Int64? {
        guard let seconds = date?.timeIntervalSince1970, seconds.isFinite, seconds >= 0,
            seconds <= Double(plausible.upperBound / 1000)
        else { return nil }
        return Int64((seconds * 1000).rounded(.down))
    }

}

/// Whether `host` names this machine only (`localhost`, `127.0.0.0/8`, `::1`): what warnings about secrets travelling
/// in clear leave alone.
package func isLoopbackHost(_ host: String) -> Bool {
    host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
}
