import Foundation
import Logging
import Synchronization
import WarrenAMQP

/// The RabbitMQ transport: one connection, a confirm-mode channel for publishing, a channel per consumer.
///
/// It declares, per work queue, the topology described by ``WarrenTopology``, and publishes every copy with
/// `mandatory` and publisher confirms, so a copy that reaches no queue is an error, never a silent loss.
public final class RabbitMQTransport: WarrenTransport {
    public let endpoints: [AMQPEndpoint]
    public let connectionName: String
    public let queueType: WarrenTopology.QueueType
    let logger: Logger
    private let state = Mutex<Connected?>(nil)

    private struct Connected: Sendable {
        var connection: AMQPConnection
        var publisher: AMQPChannel
        var topology: TopologyDeclarer
    }

    public init(
        endpoints: [AMQPEndpoint], connectionName: String = "warren", queueType: WarrenTopology.QueueType = .classic,
        logger: Logger = Logger(label: "warren.rabbitmq")
    ) {
        self.endpoints = endpoints
        self.connectionName = connectionName
        self.queueType = queueType
        self.logger = logger
    }

    public func start() async throws {
        let connection = try await AMQPConnection.connect(to: endpoints, connectionName: connectionName, logger: logger)
        do {
            let publisher = try await connection.openChannel()
            try await publisher.enableConfirms()
            let topology = try await TopologyDeclarer(connection: connection, queueType: queueType)
            state.withLock { $0 = Connected(connection: connection, publisher: publisher, topology: topology) }
        } catch {
            await connection.close()
            throw error
        }
    }

    private func connected() throws -> Connected {
        guard let connected = state.withLock({ $0 }) else {
            throw AMQPError(.connectionClosed, message: "the RabbitMQ transport is not started")
        }
        return connected
    }

    /// The connection, once started (for tools that need more than the transport offers).
    public var connection: AMQPConnection? { state.withLock { $0?.connection } }

    public func prepare(queue: String, delays: Set<Duration>) async throws {
        try await connected().topology.declare(queue: queue, delays: delays)
    }

    public func consume(queue: String, prefetch: UInt16) async throws -> TransportConsumer {
        let channel = try await connected().connection.openChannel()
        let consumer = try await channel.consume(queue: queue, prefetchCount: prefetch)
        let settler = ChannelSettler(channel: channel)
        return TransportConsumer(
            next: {
                guard let delivery = try await consumer.next() else { return nil }
                return TransportDelivery(
                    body: delivery.body, properties: delivery.properties, redelivered: delivery.redelivered,
                    exchange: delivery.exchange, routingKey: delivery.routingKey, tag: delivery.deliveryTag,
                    settler: settler)
            },
            cancel: { try await consumer.cancel() },
            close: { try? await channel.close() })
    }

    public func publish(_ body: [UInt8], to destination: Destination, properties: AMQPProperties) async throws {
        let connected = try connected()
        let exchange: String
        let routingKey: String
        switch destination {
        case .queue(let queue):
            (exchange, routingKey) = ("", queue)
        case .delay(let queue, let delay):
            try await connected.topology.ensureDelayQueue(queue: queue, delay: delay)
            (exchange, routingKey) = ("", WarrenTopology(queue: queue, queueType: queueType).delayQueue(for: delay))
        case .deadLetters(let queue):
            (exchange, routingKey) = (WarrenTopology.deadLetterExchange, queue)
        case .exchange(let name, let key):
            (exchange, routingKey) = (name, key)
        }
        try await connected.publisher.publish(body, exchange: exchange, routingKey: routingKey, mandatory: true, properties: properties)
    }

    public func close() async {
        let connected = state.withLock { state in
            defer { state = nil }
            return state
        }
        await connected?.connection.close()
    }
}

/// Acks and requeues on the channel the deliveries came from.
struct ChannelSettler: DeliverySettler {
    let channel: AMQPChannel

    func ack(_ tag: UInt64) throws { try channel.ack(deliveryTag: tag) }
    func requeue(_ tag: UInt64) throws { try channel.nack(deliveryTag: tag, requeue: true) }
}

/// Declares work, delay and dead-letter queues, once each, on a channel of its own.
final class TopologyDeclarer: Sendable {
    private let channel: AMQPChannel
    private let queueType: WarrenTopology.QueueType
    private let declared = Mutex<Set<String>>([])
    private let delays = Mutex<[String: Set<Duration>]>([:])

    init(connection: AMQPConnection, queueType: WarrenTopology.QueueType) async throws {
        channel = try await connection.openChannel()
        self.queueType = queueType
        try await channel.exchangeDeclare(WarrenTopology.deadLetterExchange, type: .direct, durable: true)
    }

    func topology(for queue: String) -> WarrenTopology {
        WarrenTopology(queue: queue, queueType: queueType)
    }

    func declare(queue: String, delays: Set<Duration>) async throws {
        let topology = topology(for: queue)
        try await declareQueue(topology.queue, arguments: topology.workQueueArguments)
        try await declareQueue(topology.deadLetterQueue, arguments: topology.workQueueArguments)
        try await channel.queueBind(topology.deadLetterQueue, exchange: WarrenTopology.deadLetterExchange, routingKey: queue)
        try await declareQueue(topology.manifestQueue, arguments: ["x-max-length": .int32(1)])
        for delay in delays.sorted() { try await ensureDelayQueue(queue: queue, delay: delay, updateManifest: false) }
        try await publishManifest(for: queue)
    }

    /// Declares the delay queue for `delay` unless this process already did.
    func ensureDelayQueue(queue: String, delay: Duration, updateManifest: Bool = true) async throws {
        let topology = topology(for: queue)
        let name = topology.delayQueue(for: delay)
        guard !declared.withLock({ $0.contains(name) }) else { return }
        try await declareQueue(name, arguments: topology.delayQueueArguments(for: delay))
        delays.withLock { _ = $0[queue, default: []].insert(delay) }
        if updateManifest { try await publishManifest(for: queue) }
    }

    /// Replaces the work queue's manifest (its manifest queue keeps only the latest message).
    private func publishManifest(for queue: String) async throws {
        let topology = topology(for: queue)
        let known = delays.withLock { $0[queue] ?? [] }
        let manifest = TopologyManifest(
            queue: queue, queueType: queueType.rawValue, deadLetterExchange: WarrenTopology.deadLetterExchange,
            deadLetterQueue: topology.deadLetterQueue,
            delayQueues: known.sorted().map { .init(name: topology.delayQueue(for: $0), delayMilliseconds: $0.milliseconds) },
            updatedAt: Date())
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try await channel.publish(
            Array(try encoder.encode(manifest)), routingKey: topology.manifestQueue,
            properties: AMQPProperties(contentType: "application/json", deliveryMode: .persistent, type: "warren.topology"))
    }

    private func declareQueue(_ name: String, arguments: AMQPTable) async throws {
        do {
            try await channel.queueDeclare(name, durable: true, arguments: arguments)
            declared.withLock { _ = $0.insert(name) }
        } catch let error as AMQPError where error.replyCode == 406 {
            throw WarrenError(
                .topologyConflict,
                "queue '\(name)' exists with other settings than Warren needs (\(arguments)); broker said: \(error.replyText ?? "")")
        }
    }
}
