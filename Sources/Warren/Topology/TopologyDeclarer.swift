import Foundation
import Synchronization
import WarrenAMQP

/// Declares work, delay and dead-letter queues, once each, on a channel of its own.
final class TopologyDeclarer: Sendable {
    private let channel: AMQPChannel
    private let connection: AMQPConnection
    var isOpen: Bool { channel.isOpen }
    private let queueType: WarrenTopology.QueueType
    private let cascade: DelayCascade
    private let declared = Mutex<Set<String>>([])
    private let delays = Mutex<[String: Set<Duration>]>([:])
    /// Whether this declarer declared the cascade's delivery exchange, and its levels; the queues it bound to it.
    private let deliveryDeclared = Atomic<Bool>(false)
    private let levelsDeclared = Atomic<Bool>(false)
    private let dueQueues = Mutex<Set<String>>([])
    /// Whether the broker had the delivery exchange when this declarer first asked; `nil` before.
    private let deliveryFound = Mutex<Bool?>(nil)

    init(connection: AMQPConnection, queueType: WarrenTopology.QueueType, cascade: DelayCascade) async throws {
        channel = try await connection.openChannel()
        self.connection = connection
        self.queueType = queueType
        self.cascade = cascade
        try await channel.exchangeDeclare(WarrenTopology.deadLetterExchange, type: .direct, durable: true)
    }

    func topology(for queue: String) -> WarrenTopology {
        WarrenTopology(queue: queue, queueType: partitionQueues.withLock { $0.contains(queue) } ? .classic : queueType)
    }

    /// Partition queues of the flows this declarer declared: classic whatever the transport's queue type.
    private let partitionQueues = Mutex<Set<String>>([])
    /// The ordered flows declared (by name and partition count), and the queues counting returns.
    private let flowsDeclared = Mutex<Set<PartitionedFlow>>([])
    private let returnsDeclared = Mutex<Set<String>>([])

    /// Declares the flow's consistent-hash exchange (hashing ``WarrenHeader/partitionKey``) and its partition queues,
    /// each a classic work queue with its dead letters, bound with weight 1; once per flow.
    func declare(flow: PartitionedFlow) async throws {
        guard !flowsDeclared.withLock({ $0.contains(flow) }) else { return }
        partitionQueues.withLock { $0.formUnion(flow.queues) }
        do {
            try await channel.exchangeDeclare(
                flow.name, type: "x-consistent-hash", durable: true,
                arguments: ["hash-header": .string(WarrenHeader.partitionKey)])
        } catch let error as AMQPError where error.replyCode == 503 || error.replyCode == 406 {
            throw WarrenError(
                .topologyConflict,
                "cannot declare the ordered flow's exchange '\(flow.name)' as x-consistent-hash hashing \(WarrenHeader.partitionKey): "
                    + "\(error.replyText ?? "\(error)") (enable the rabbitmq_consistent_hash_exchange plugin, or delete an exchange of another type by that name)"
            )
        }
        for queue in flow.queues {
            try await declare(queue: queue, delays: [])
            try await channel.queueBind(queue, exchange: flow.name, routingKey: "1")
        }
        try await declareQueue(flow.membersQueue, arguments: ["x-queue-type": "classic"])
        // Declared now, so that a conflict or a missing permission is an error at start rather than a return that
        // cannot be counted.
        for queue in flow.queues { try await declareReturnsQueue(of: queue) }
        flowsDeclared.withLock { _ = $0.insert(flow) }
    }

    /// Takes the return count kept for the ordered queue `queue` (declaring its queue of one message on first use), or
    /// `nil` when it holds none.
    func takeReturnMark(of queue: String) async throws -> [UInt8]? {
        try await declareReturnsQueue(of: queue)
        return try await channel.get(queue: PartitionedFlow.returnsQueue(of: queue), noAck: true)?.delivery.body
    }

    private func declareReturnsQueue(of queue: String) async throws {
        let marks = PartitionedFlow.returnsQueue(of: queue)
        guard !returnsDeclared.withLock({ $0.contains(marks) }) else { return }
        try await declareQueue(
            marks, arguments: ["x-queue-type": "classic", "x-max-length": .int32(1), "x-overflow": "drop-head"])
        returnsDeclared.withLock { _ = $0.insert(marks) }
    }

    func declareTopicExchange(_ name: String) async throws {
        try await channel.exchangeDeclare(name, type: .topic, durable: true)
    }

    func declare(queue: String, delays: Set<Duration>) async throws {
        let topology = topology(for: queue)
        try await declareQueue(topology.queue, arguments: topology.workQueueArguments)
        try await declareQueue(topology.deadLetterQueue, arguments: topology.workQueueArguments)
        try await declareQueue(topology.redeliveredQueue, arguments: topology.workQueueArguments)
        try await channel.queueBind(
            topology.deadLetterQueue, exchange: WarrenTopology.deadLetterExchange, routingKey: queue)
        try await declareQueue(topology.manifestQueue, arguments: topology.manifestQueueArguments)
        await bindForDueMessages(queue)
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

    /// Declares the cascade's levels unless this declarer did, and binds `queue` to its delivery exchange unless it
    /// did (the first time on a channel of its own: a queue that does not exist closes that channel, not this one).
    /// - Throws: a channel error (404) when `queue` does not exist.
    func ensureCascade(deliveringTo queue: String) async throws {
        if !levelsDeclared.load(ordering: .acquiring) {
            try await declareLevels()
            levelsDeclared.store(true, ordering: .releasing)
        }
        guard !dueQueues.withLock({ $0.contains(queue) }) else { return }
        let own = try await connection.openChannel()
        do {
            try await own.queueBind(
                queue, exchange: cascade.deliveryExchange, routingKey: DelayCascade.deliveryKey(queue: queue))
            try? await own.close()
        } catch {
            try? await own.close()
            throw error
        }
        dueQueues.withLock { _ = $0.insert(queue) }
    }

    /// Binds a work queue being declared to the due cascade's delivery exchange when that exists (someone published a
    /// message due at a time on this broker), so that a queue deleted and declared again — by a worker that starts or
    /// reconnects — takes the due messages that come due after. On a channel of its own, and only an attempt: a broker
    /// without the cascade (404), or a user without permissions on it (403), changes nothing for the worker.
    private func bindForDueMessages(_ queue: String) async {
        guard DelayCascade.problem(withQueue: queue) == nil, await cascadeExists(),
            let own = try? await connection.openChannel()
        else { return }
        do {
            try await own.queueBind(
                queue, exchange: cascade.deliveryExchange, routingKey: DelayCascade.deliveryKey(queue: queue))
            dueQueues.withLock { _ = $0.insert(queue) }
        } catch {}
        try? await own.close()
    }

    /// Whether the cascade's delivery exchange exists on the broker: asked once per connection (a passive declare on a
    /// channel of its own; a broker without it logs that 404 once), then known — this process declares it when it
    /// publishes its first due message.
    private func cascadeExists() async -> Bool {
        if deliveryDeclared.load(ordering: .acquiring) { return true }
        if let known = deliveryFound.withLock({ $0 }) { return known }
        guard let own = try? await connection.openChannel() else { return false }
        let found: Bool
        do {
            try await own.exchangeDeclare(cascade.deliveryExchange, type: .topic, passive: true)
            found = true
        } catch {
            found = false
        }
        try? await own.close()
        deliveryFound.withLock { $0 = found }
        return found
    }

    /// The delivery exchange, with its alternate exchange and queue for what is due for a queue that is gone. The
    /// cascade's queues are classic whatever the work queues' type: one cascade serves every queue of a virtual host,
    /// whichever transport declares it first.
    private func declareDeliveryExchange() async throws {
        guard !deliveryDeclared.load(ordering: .acquiring) else { return }
        try await channel.exchangeDeclare(cascade.unroutedQueue, type: .fanout, durable: true)
        try await declareQueue(cascade.unroutedQueue, arguments: ["x-queue-type": "classic"])
        try await channel.queueBind(cascade.unroutedQueue, exchange: cascade.unroutedQueue)
        try await channel.exchangeDeclare(
            cascade.deliveryExchange, type: .topic, durable: true,
            arguments: ["alternate-exchange": .string(cascade.unroutedQueue)])
        deliveryDeclared.store(true, ordering: .releasing)
    }

    /// Level 0 first, so that each level's "0" binding finds the exchange below it declared.
    private func declareLevels() async throws {
        try await declareDeliveryExchange()
        let queueType: AMQPTable = ["x-queue-type": "classic"]
        for level in 0..<DelayCascade.levelCount {
            let name = cascade.level(level)
            let next = level == 0 ? cascade.deliveryExchange : cascade.level(level - 1)
            try await channel.exchangeDeclare(name, type: .topic, durable: true)
            var arguments = queueType
            arguments["x-message-ttl"] = .int64(cascade.holdMilliseconds(ofLevel: level))
            arguments["x-dead-letter-exchange"] = .string(next)
            try await declareQueue(name, arguments: arguments)
            try await channel.queueBind(
                name, exchange: name, routingKey: DelayCascade.bindingKey(level: level, bit: "1"))
            try await channel.exchangeBind(
                destination: next, source: name, routingKey: DelayCascade.bindingKey(level: level, bit: "0"))
        }
    }

    /// Replaces the work queue's manifest (its manifest queue keeps only the latest message).
    private func publishManifest(for queue: String) async throws {
        let topology = topology(for: queue)
        let known = delays.withLock { $0[queue] ?? [] }
        let manifest = TopologyManifest(
            queue: queue, queueType: queueType.rawValue, deadLetterExchange: WarrenTopology.deadLetterExchange,
            deadLetterQueue: topology.deadLetterQueue,
            delayQueues: known.sorted().map {
                .init(name: topology.delayQueue(for: $0), delayMilliseconds: $0.milliseconds)
            },
            updatedAt: Date())
        try await channel.publish(
            Array(try manifest.json()), routingKey: topology.manifestQueue,
            properties: AMQPProperties(
                contentType: "application/json", deliveryMode: .persistent, type: "warren.topology"))
    }

    private func declareQueue(_ name: String, arguments: AMQPTable) async throws {
        do {
            try await channel.queueDeclare(name, durable: true, arguments: arguments)
            declared.withLock { _ = $0.insert(name) }
        } catch let error as AMQPError where error.replyCode == 406 {
            let wanted = arguments.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            throw WarrenError(
                .topologyConflict,
                "queue '\(name)' exists with other arguments than Warren declares (\(wanted)); the broker said: "
                    + "\(error.replyText ?? "406 PRECONDITION_FAILED"). Delete the queue (its messages with it), or declare it "
                    + "as it is (warren.queue.type for x-queue-type)")
        }
    }
}
