import Foundation

/// A message that belongs to an ordered flow (``PartitionedFlow``): messages with the same key are handled in the order
/// they were published, one at a time, by one process; messages of other keys run in parallel on other partitions.
///
/// ```swift
/// struct OrderEvent: PartitionedMessage {
///     static var messageType: String { "order.event" }
///     var orderId: String
///     var seq: Int
///     var partitionKey: String { orderId }
/// }
/// ```
public protocol PartitionedMessage: WarrenMessage {
    /// What orders the message: messages with equal keys stay in order. 1 to ``PartitionedFlow/maximumKeyBytes`` bytes
    /// of UTF-8.
    var partitionKey: String { get }
}

/// An ordered flow: the exchange `name` (RabbitMQ's consistent-hash exchange, hashing the header
/// `x-warren-partition-key`) in front of `partitions` classic queues `name.partition.0` … `name.partition.<N-1>`.
/// Each partition is handled by one process at a time (the one holding its exclusive consumer; the others stand by),
/// one message at a time, so a key's messages keep their order while the partitions run in parallel across processes.
///
/// The number of partitions is part of the flow: with another number, the exchange sends some keys elsewhere. Change it
/// only with the flow drained (docs/partitions.md).
public struct PartitionedFlow: Sendable, Hashable, CustomStringConvertible {
    /// The exchange's name, and the prefix of its queues'.
    public let name: String
    /// How many partition queues the exchange spreads the keys over.
    public let partitions: Int

    /// The most partitions a flow may have.
    public static let maximumPartitions = 1_000
    /// The longest partition key, in bytes of UTF-8.
    public static let maximumKeyBytes = 256

    /// - Throws: ``WarrenError`` with ``WarrenError/Code/invalidConfiguration`` for a name that is empty, longer than
    ///   200 bytes, starts with `amq.` or holds other characters than `A-Z a-z 0-9 . _ -`, or for `partitions` outside
    ///   1...``maximumPartitions``.
    public init(_ name: String, partitions: Int) throws {
        guard LeadershipNames.isValid(name, maximumBytes: 200), !name.hasPrefix("amq.") else {
            throw WarrenError(
                .invalidConfiguration,
                "a flow's name is 1–200 of A-Z a-z 0-9 . _ - and does not start with amq. (got '\(name.prefix(64))')")
        }
        guard (1...Self.maximumPartitions).contains(partitions) else {
            throw WarrenError(
                .invalidConfiguration, "a flow has 1–\(Self.maximumPartitions) partitions (got \(partitions))")
        }
        self.name = name
        self.partitions = partitions
    }

    /// The queue of partition `index` (0..<``partitions``).
    public func queue(_ index: Int) -> String { "\(name).partition.\(index)" }

    /// Every partition's queue, in order.
    public var queues: [String] { (0..<partitions).map(queue) }

    /// The queue whose consumers are the processes sharing the flow (``WarrenTransport/join(flow:)``): no message goes
    /// there; its consumer count is how many share the partitions.
    public var membersQueue: String { "\(name).members" }

    /// The most partitions one of `members` processes holds: ⌈partitions / members⌉.
    public func share(members: Int) -> Int {
        let members = max(1, members)
        return (partitions + members - 1) / members
    }

    /// Where the redeliveries of partition `queue`'s head message are counted (one message, kept on the broker).
    static func returnsQueue(of queue: String) -> String { "\(queue).returns" }

    /// Whether `key` can order a message: 1 to ``maximumKeyBytes`` bytes.
    public static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.count <= maximumKeyBytes
    }

    public var description: String { "\(name) (\(partitions) partitions)" }
}

/// A stable 64-bit hash (FNV-1a) of text: the same in every process and every run, unlike `Hasher`.
enum PartitionHash {
    static func fnv1a(_ text: some StringProtocol) -> UInt64 {
        fnv1a(bytes: text.utf8)
    }

    static func fnv1a(bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}

/// How many times in a row the head message of an ordered queue came back unsettled: the one message of the queue's
/// `.returns` queue, JSON (`{"message":"id:…","returns":2}`).
struct ReturnMark: Codable, Equatable {
    /// ``OrderedDelivery/key(of:)`` of the message counted.
    var message: String
    var returns: Int

    init(message: String, returns: Int) {
        self.message = message
        self.returns = returns
    }

    /// `nil` for anything else than a mark (a hand-published message, a truncated one).
    init?(json: [UInt8]) {
        guard json.count <= 4096, let mark = try? JSONDecoder().decode(Self.self, from: Data(json)), mark.returns >= 1
        else { return nil }
        self = mark
    }

    var json: [UInt8] { (try? Array(JSONEncoder().encode(self))) ?? [] }

    /// The count after another return of `message`: one more when this mark counted it, else 1.
    func counted(_ message: String) -> Int {
        message == self.message ? returns &+ 1 : 1
    }
}

/// What identifies a delivery of an ordered queue across its returns.
enum OrderedDelivery {
    /// Its message id, or for a message without one a hash of its body.
    static func key(messageID: String?, body: [UInt8]) -> String {
        if let messageID, !messageID.isEmpty { return "id:\(messageID.prefix(512))" }
        return "body:\(String(PartitionHash.fnv1a(bytes: body), radix: 16))"
    }
}
