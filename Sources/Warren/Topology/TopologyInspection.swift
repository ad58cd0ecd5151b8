import Foundation
import WarrenAMQP

/// One of the queues Warren declares for a work queue, as the broker reports it now.
public struct QueueInspection: Sendable, Equatable, Codable {
    /// `work`, `delay`, `redelivered` or `dead-letters`.
    public var role: String
    public var name: String
    /// Messages ready for delivery (AMQP's count: not those delivered and unacked); `nil` when the queue is missing.
    public var messages: Int?
    public var consumers: Int?
    /// A delay queue's delay, in milliseconds.
    public var delayMilliseconds: Int64?
    public var exists: Bool

    public init(role: String, name: String, messages: Int?, consumers: Int?, delayMilliseconds: Int64?, exists: Bool) {
        self.role = role
        self.name = name
        self.messages = messages
        self.consumers = consumers
        self.delayMilliseconds = delayMilliseconds
        self.exists = exists
    }

    enum CodingKeys: String, CodingKey {
        case role, name, messages, consumers, exists
        case delayMilliseconds = "delay_ms"
    }
}

extension WarrenTopology {
    /// The work queue, its delay queues (found through the topology manifest, without the management API), its
    /// redelivered queue and its dead letters, with depths and consumers, by passive declares on `connection`. A
    /// missing queue is reported with `exists == false`, not thrown.
    /// - Throws: ``AMQPError`` when the connection fails.
    public func inspect(on connection: AMQPConnection) async throws -> [QueueInspection] {
        var manifest: TopologyManifest?
        if let status = try await Self.probe(connection, manifestQueue), status.messageCount > 0 {
            let channel = try await connection.openChannel()
            if let result = try await channel.get(queue: manifestQueue) {
                manifest = try? TopologyManifest(json: Data(result.delivery.body))
            }
            try await channel.close()  // unacked: the manifest stays in its queue
        }
        var wanted: [(role: String, name: String, delay: Int64?)] = [("work", queue, nil)]
        for delay in manifest?.delayQueues ?? [] { wanted.append(("delay", delay.name, delay.delayMilliseconds)) }
        wanted.append(("redelivered", redeliveredQueue, nil))
        wanted.append(("dead-letters", deadLetterQueue, nil))
        var rows: [QueueInspection] = []
        for (role, name, delay) in wanted {
            let status = try await Self.probe(connection, name)
            rows.append(
                QueueInspection(
                    role: role, name: name, messages: status?.messageCount, consumers: status?.consumerCount,
                    delayMilliseconds: delay,
                    exists: status != nil))
        }
        return rows
    }

    /// Whether a Warren worker declared this work queue: its manifest queue exists and holds the manifest. A queue name
    /// that only appears in events (which anyone may publish) is not one.
    /// - Throws: ``AMQPError`` when the connection fails.
    public func hasManifest(on connection: AMQPConnection) async throws -> Bool {
        (try await Self.probe(connection, manifestQueue)?.messageCount ?? 0) > 0
    }

    /// A passive declare on a channel of its own (a missing queue closes its channel); `nil` when the queue is missing.
    private static func probe(_ connection: AMQPConnection, _ name: String) async throws -> AMQPQueueStatus? {
        let channel = try await connection.openChannel()
        do {
            let status = try await channel.queueStatus(name)
            try await channel.close()
            return status
        } catch let error as AMQPError where error.replyCode == 404 {
            return nil
        }
    }
}
