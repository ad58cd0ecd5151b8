import Foundation
import Logging
import Synchronization
import WarrenAMQP

/// Leadership held on RabbitMQ: the exclusive consumer of the durable, always-empty queue `warren.leader.<election>`.
///
/// The broker lets one consumer be exclusive on a queue; a second process's attempt is refused with 403
/// ACCESS_REFUSED (and its channel closed), until the holder's connection goes — closed, lost, or declared dead by
/// the broker after two missed heartbeats. The consumer takes nothing (no message is published to the queue, and any
/// that is would be auto-acknowledged), so RabbitMQ's `consumer_timeout` never applies to it.
///
/// The term owns its connection, which never reconnects: when the broker drops it, the term is over and everything
/// published on it fails. That is the fencing — a leader frozen past its heartbeats wakes to a closed socket.
final class RabbitMQLeadershipTerm: LeadershipTerm {
    let election: String
    private let connection: AMQPConnection
    private let consumer: AMQPConsumer
    private let publisher: AMQPChannel
    private let resigned = Atomic<Bool>(false)
    /// Set as soon as the watcher sees the term end (the consumer cancelled, the connection closed).
    private let ended = Atomic<Bool>(false)
    /// Whether this term declared the directory's queue already (once per term, not once per tick).
    private let directoryDeclared = Atomic<Bool>(false)

    private init(election: String, connection: AMQPConnection, consumer: AMQPConsumer, publisher: AMQPChannel) {
        self.election = election
        self.connection = connection
        self.consumer = consumer
        self.publisher = publisher
    }

    /// Runs for `election` on a new connection; `nil` (connection closed) when another process holds it.
    static func campaign(
        _ election: String, endpoints: [AMQPEndpoint], connectionName: String, logger: Logger
    ) async throws -> RabbitMQLeadershipTerm? {
        try LeadershipNames.check(election, as: "an election's name")
        // A bounded heartbeat on the term's connection, whatever the transport's: without one, a frozen or cut-off
        // leader would hold the queue until TCP gives up (hours), and no standby could take over.
        let maximumHeartbeat = Self.maximumHeartbeat
        let bounded = endpoints.map { endpoint in
            var endpoint = endpoint
            if endpoint.heartbeat.map({ $0 > .zero && $0 <= maximumHeartbeat }) != true {
                endpoint.heartbeat = maximumHeartbeat
            }
            return endpoint
        }
        let connection = try await AMQPConnection.connect(
            to: bounded, connectionName: connectionName, logger: logger)
        do {
            let hold = try await connection.openChannel()
            let queue = LeadershipNames.electionQueue(election)
            try await hold.queueDeclare(queue, durable: true)
            let consumer: AMQPConsumer
            do {
                consumer = try await hold.consume(queue: queue, noAck: true, exclusive: true)
            } catch let error as AMQPError where error.replyCode == 403 {
                await connection.close()
                return nil
            }
            let publisher = try await connection.openChannel()
            try await publisher.enableConfirms()
            return RabbitMQLeadershipTerm(
                election: election, connection: connection, consumer: consumer, publisher: publisher)
        } catch {
            await connection.close()
            throw error
        }
    }

    /// The longest heartbeat a term's connection uses (a frozen leader is replaced within twice this, plus a
    /// campaign interval).
    static let maximumHeartbeat: Duration = .seconds(20)

    var isHeld: Bool {
        !resigned.load(ordering: .acquiring) && !ended.load(ordering: .acquiring) && connection.isOpen
            && consumer.channel.isOpen
    }

    func waitUntilEnded() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.connection.waitUntilClosed() }
            group.addTask {
                // Ends when the broker cancels the consumer (its queue deleted) or its channel closes.
                do { for try await _ in self.consumer {} } catch {}
            }
            await group.next()
            self.ended.store(true, ordering: .releasing)
            // Whatever ended it, nothing more goes out with this term; the close also ends the other watcher (a
            // connection's close does not heed cancellation).
            await self.connection.close()
            group.cancelAll()
        }
    }

    func publish(_ message: OutboundMessage) async throws {
        guard isHeld else { throw WarrenError.leadershipEnded(election) }
        let exchange: String
        let routingKey: String
        switch message.destination {
        case .queue(let queue): (exchange, routingKey) = ("", queue)
        case .exchange(let name, let key), .broadcast(let name, let key): (exchange, routingKey) = (name, key)
        case .delay, .deadLetters, .due, .partitioned:
            throw WarrenError(.invalidConfiguration, "a leader publishes to queues and exchanges only")
        }
        do {
            try await publisher.publish(
                message.body, exchange: exchange, routingKey: routingKey, mandatory: message.destination.isMandatory,
                properties: message.properties)
        } catch let error as AMQPError where !connection.isOpen {
            throw WarrenError(
                .leadershipLost,
                "the leadership of '\(election)' ended before the broker confirmed (the message may or may not have been enqueued): \(error)"
            )
        } catch {
            // A channel error (a missing exchange) closed the term's only publishing channel: end the term rather than
            // hold a leadership that can publish nothing; the process campaigns again on a new connection.
            if !publisher.isOpen { await connection.close() }
            throw error
        }
    }

    func resign() async {
        resigned.store(true, ordering: .releasing)
        await connection.close()
    }

    // MARK: Schedules

    func prepareSchedule(_ name: String) async throws {
        try LeadershipNames.check(name, as: "a schedule's name")
        try await onOwnChannel { channel in
            for queue in [LeadershipNames.lastTickQueue(name), LeadershipNames.pauseQueue(name)] {
                try await channel.queueDeclare(queue, durable: true, arguments: Self.stateQueueArguments)
            }
            try await channel.queueDeclare(
                LeadershipNames.triggerQueue(name), durable: true, arguments: Self.triggerQueueArguments)
        }
    }

    /// At most 100 requests wait for a run now; more are refused to whoever asks (a negative confirm).
    static let triggerQueueArguments: AMQPTable = [
        "x-max-length": .int64(100), "x-overflow": .string("reject-publish"),
    ]

    func triggers(_ name: String) async throws -> ScheduleTriggers {
        let channel = try await connection.openChannel()
        let consumer: AMQPConsumer
        do {
            consumer = try await channel.consume(queue: LeadershipNames.triggerQueue(name), prefetchCount: 1)
        } catch {
            try? await channel.close()
            throw error
        }
        return ScheduleTriggers(
            next: {
                guard let delivery = try await consumer.next() else { return nil }
                return ScheduleTrigger.decode(
                    delivery.body, done: { try delivery.ack() },
                    giveBack: { try? delivery.reject(requeue: true) })
            },
            close: { try? await channel.close() })
    }

    func publishDirectory(_ directory: ScheduleDirectory, to queue: String) async throws {
        if !directoryDeclared.load(ordering: .acquiring) {
            try await onOwnChannel { channel in
                try await channel.queueDeclare(queue, durable: true, arguments: Self.stateQueueArguments)
            }
            directoryDeclared.store(true, ordering: .releasing)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            try await publish(
                OutboundMessage(
                    body: Array(try encoder.encode(directory)), destination: .queue(queue),
                    properties: AMQPProperties(
                        contentType: "application/json", deliveryMode: .persistent, timestamp: Date(),
                        type: "warren.schedules")))
        } catch {
            // Its queue deleted meanwhile (unroutable): declared again at the next write.
            directoryDeclared.store(false, ordering: .releasing)
            throw error
        }
    }

    /// A schedule's state queues keep the newest message only (a policy must not set another overflow, a TTL or an
    /// expiry on `warren.schedule.*`: docs/scheduling.md).
    static let stateQueueArguments: AMQPTable = ["x-max-length": .int64(1), "x-overflow": .string("drop-head")]

    func scheduleState(_ name: String) async throws -> ScheduleState {
        let (last, paused) = try await onOwnChannel { channel in
            // The message stays where it is: it is not acknowledged, and closing the channel returns it to the queue.
            let last = try await channel.get(queue: LeadershipNames.lastTickQueue(name), noAck: false)
            return (last, try await channel.queueStatus(LeadershipNames.pauseQueue(name)).messageCount > 0)
        }
        // Only a record of this schedule counts (anyone allowed to publish to the default exchange could put another).
        let headers = last?.delivery.properties.headers ?? [:]
        guard headers[ScheduleHeader.schedule]?.stringValue == name else {
            return ScheduleState(lastTick: nil, paused: paused)
        }
        return ScheduleState(lastTick: headers[ScheduleHeader.scheduledFor].flatMap(\.int64Value), paused: paused)
    }

    func isPaused(_ name: String) async throws -> Bool {
        try await onOwnChannel { channel in
            try await channel.queueStatus(LeadershipNames.pauseQueue(name)).messageCount > 0
        }
    }

    /// Runs `body` on a channel of its own, closed afterwards whatever happens (a failed declare or passive declare
    /// closes it on the broker's side; a failure of another kind would leave it open).
    @discardableResult
    private func onOwnChannel<T: Sendable>(_ body: (AMQPChannel) async throws -> T) async throws -> T {
        let channel = try await connection.openChannel()
        do {
            let value = try await body(channel)
            try? await channel.close()
            return value
        } catch {
            try? await channel.close()
            throw error
        }
    }

    func publishTick(_ message: OutboundMessage?, schedule name: String, scheduledFor: Int64) async throws {
        // The run first, then the record of its tick: a leader that dies between the two confirms leaves a tick the
        // next leader publishes again with the same message id (an idempotency store drops it); the other order
        // would lose the run.
        if let message { try await publish(message) }
        let record = OutboundMessage(
            body: Array("{\"scheduled_for\":\(scheduledFor)}".utf8),
            destination: .queue(LeadershipNames.lastTickQueue(name)),
            properties: AMQPProperties(
                contentType: "application/json",
                headers: [ScheduleHeader.scheduledFor: .int64(scheduledFor), ScheduleHeader.schedule: .string(name)],
                deliveryMode: .persistent, timestamp: Date()))
        try await publish(record)
    }
}
