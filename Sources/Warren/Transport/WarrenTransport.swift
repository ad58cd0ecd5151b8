import Foundation
import WarrenAMQP

/// Where a worker's messages come from and where its retry and dead-letter copies go: RabbitMQ
/// (``RabbitMQTransport``) or memory (``InMemoryTransport``), interchangeable.
///
/// A host picks a transport and passes it to ``Worker``, ``WarrenPublisher`` and the like; it does not call the
/// transport's requirements itself. They, and the delivery plumbing, are the framework's: behind
/// `@_spi(WarrenTransport)`, for whoever writes a transport (`@_spi(WarrenTransport) import Warren`).
///
/// A transport only moves messages; every decision (ack, retry, dead letter) is the worker's.
public protocol WarrenTransport: Sendable {
    /// Connects, when the transport needs to.
    @_spi(WarrenTransport)
    func start() async throws
    /// Makes sure the work queue, its delay queues for `delays` and its dead letters exist (idempotent).
    /// - Throws: ``WarrenError`` with ``WarrenError/Code/topologyConflict`` when existing queues contradict them.
    @_spi(WarrenTransport)
    func prepare(queue: String, delays: Set<Duration>) async throws
    /// Starts delivering `queue`, at most `prefetch` unsettled deliveries at a time.
    @_spi(WarrenTransport)
    func consume(queue: String, prefetch: UInt16) async throws -> TransportConsumer
    /// Publishes a message and returns once the transport has taken responsibility for it (a broker confirm).
    /// - Throws: when it could not (unroutable, nacked, connection lost).
    @_spi(WarrenTransport)
    func publish(_ body: [UInt8], to destination: Destination, properties: AMQPProperties) async throws
    /// Publishes several messages, pipelined where the transport can (every message is sent before any confirm is
    /// awaited), each with the guarantees of ``publish(_:to:properties:)``.
    /// - Returns: one result per message, in order.
    @_spi(WarrenTransport)
    func publish(contentsOf messages: [OutboundMessage]) async -> [Result<Void, any Error>]
    /// Disconnects. Unsettled deliveries return to their queues.
    @_spi(WarrenTransport)
    func close() async
    /// Whether starting again can get past `error`, thrown by one of this transport's calls: the connection or a
    /// channel went away, or the broker could not be reached. `false` for mistakes that would fail again (a topology
    /// conflict, refused credentials, a refused message). A worker recovers from recoverable errors and stops on the
    /// others; this is the one place that tells them apart.
    @_spi(WarrenTransport)
    func isRecoverable(_ error: any Error) -> Bool
    /// Whether `error` ended a consumer because the broker cancelled it (its queue was deleted or became
    /// unavailable), rather than because the connection or a channel went away. A health report says so.
    @_spi(WarrenTransport)
    func isConsumerCancellation(_ error: any Error) -> Bool
    /// Declares a durable topic exchange (idempotent); nothing for a transport without exchanges.
    @_spi(WarrenTransport)
    func declareTopicExchange(_ name: String) async throws
    /// Runs for leadership of `election`: returns the term when this process won it, `nil` when another process holds
    /// it now (try again later). Elections of the same name on the same broker (virtual host) are one election.
    /// - Throws: when the broker cannot be reached, or ``WarrenError/Code/invalidConfiguration`` for a transport
    ///   without elections.
    @_spi(WarrenTransport)
    func campaign(for election: String) async throws -> (any LeadershipTerm)?
    /// Makes sure the ordered flow's exchange and partition queues exist, each partition queue classic (so that what
    /// comes back unsettled returns to its place) with its dead letters (idempotent).
    /// - Throws: ``WarrenError/Code/topologyConflict`` when existing queues contradict them;
    ///   ``WarrenError/Code/invalidConfiguration`` for a transport without ordered flows.
    @_spi(WarrenTransport)
    func prepare(flow: PartitionedFlow) async throws
    /// Starts delivering `queue` to this consumer alone (an exclusive consumer): `nil` when another consumer holds it
    /// now (try again later). Its hold ends when the consumer or its connection does.
    @_spi(WarrenTransport)
    func consumeExclusively(queue: String, prefetch: UInt16) async throws -> TransportConsumer?
    /// Joins the processes that share `flow`'s partitions, so that each can take its share: the membership lasts until
    /// ``FlowMembership/leave()`` or until the connection goes.
    @_spi(WarrenTransport)
    func join(flow: PartitionedFlow) async throws -> FlowMembership
    /// Counts a return of the message `messageKey` at the head of the ordered queue `queue`, before its handler runs
    /// again: how many times in a row it came back (1 the first time), kept with the broker so that a process it
    /// crashes does not take the count with it. Confirmed before it returns.
    @_spi(WarrenTransport)
    func countReturn(of messageKey: String, in queue: String) async throws -> Int
    /// Whether the transport can reach its broker right now (its connection is open); what a readiness probe of a
    /// host that only publishes reports. `true` for a transport without a connection.
    var isConnected: Bool { get }
}

extension WarrenTransport {
    /// No elections: throws ``WarrenError/Code/invalidConfiguration``.
    @_spi(WarrenTransport)
    public func campaign(for election: String) async throws -> (any LeadershipTerm)? {
        throw WarrenError(.invalidConfiguration, "\(type(of: self)) holds no leader elections")
    }

    /// Nothing to declare.
    @_spi(WarrenTransport)
    public func declareTopicExchange(_ name: String) async throws {}

    /// No ordered flows: throws ``WarrenError/Code/invalidConfiguration``.
    @_spi(WarrenTransport)
    public func prepare(flow: PartitionedFlow) async throws {
        throw WarrenError(.invalidConfiguration, "\(type(of: self)) holds no ordered flows")
    }

    /// No exclusive consumers: throws ``WarrenError/Code/invalidConfiguration``.
    @_spi(WarrenTransport)
    public func consumeExclusively(queue: String, prefetch: UInt16) async throws -> TransportConsumer? {
        throw WarrenError(.invalidConfiguration, "\(type(of: self)) holds no ordered flows")
    }

    /// No ordered flows: throws ``WarrenError/Code/invalidConfiguration``.
    @_spi(WarrenTransport)
    public func join(flow: PartitionedFlow) async throws -> FlowMembership {
        throw WarrenError(.invalidConfiguration, "\(type(of: self)) holds no ordered flows")
    }

    /// No ordered flows: throws ``WarrenError/Code/invalidConfiguration``.
    @_spi(WarrenTransport)
    public func countReturn(of messageKey: String, in queue: String) async throws -> Int {
        throw WarrenError(.invalidConfiguration, "\(type(of: self)) holds no ordered flows")
    }

    /// Always: a transport without a connection to lose.
    public var isConnected: Bool { true }

    /// Never: a transport whose consumers the broker cannot cancel.
    @_spi(WarrenTransport)
    public func isConsumerCancellation(_ error: any Error) -> Bool { false }

    /// One message after the other.
    @_spi(WarrenTransport)
    public func publish(contentsOf messages: [OutboundMessage]) async -> [Result<Void, any Error>] {
        var results: [Result<Void, any Error>] = []
        results.reserveCapacity(messages.count)
        for message in messages {
            do {
                try await publish(message.body, to: message.destination, properties: message.properties)
                results.append(.success(()))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }
}

/// A process's place among those that share an ordered flow's partitions (``WarrenTransport/join(flow:)``).
@_spi(WarrenTransport)
public struct FlowMembership: Sendable {
    private let countMembers: @Sendable () async throws -> Int
    private let end: @Sendable () async -> Void

    /// - Parameters:
    ///   - members: how many processes are members now, this one included.
    ///   - leave: ends the membership.
    public init(members: @escaping @Sendable () async throws -> Int, leave: @escaping @Sendable () async -> Void) {
        countMembers = members
        end = leave
    }

    /// How many processes share the flow now, this one included (at least 1).
    public func members() async throws -> Int { max(1, try await countMembers()) }

    public func leave() async { await end() }
}

/// A message to publish, with where it goes.
public struct OutboundMessage: Sendable {
    public var body: [UInt8]
    public var destination: Destination
    public var properties: AMQPProperties

    public init(body: [UInt8], destination: Destination, properties: AMQPProperties) {
        self.body = body
        self.destination = destination
        self.properties = properties
    }
}

/// Where a published message goes.
public enum Destination: Sendable, Hashable {
    /// Straight into a queue (RabbitMQ: the default exchange).
    case queue(String)
    /// Into `queue`'s delay queue for `delay`, from which it returns to `queue` once the delay has passed.
    case delay(queue: String, delay: Duration)
    /// Into `queue`'s dead letters.
    case deadLetters(queue: String)
    /// Into `queue` at `at`: the transport holds the message until then (RabbitMQ: in the levels of its
    /// ``DelayCascade``, at most ``DelayCascade/maximumDelay`` ahead; memory: on the transport's clock). Due now or in
    /// the past, it goes straight into `queue`. ``WarrenPublisher`` writes the due time into the message's
    /// `x-warren-due-at` header, for the ledger.
    case due(queue: String, at: Date)
    /// Into the partition of an ordered flow that its `x-warren-partition-key` header hashes to (``WarrenPublisher``
    /// writes it from the message's ``PartitionedMessage/partitionKey``). The transport declares the flow's exchange
    /// and queues on first use.
    case partitioned(PartitionedFlow)
    /// To an exchange with a routing key (RabbitMQ); the in-memory transport routes by routing key to the queue of
    /// that name.
    case exchange(String, routingKey: String)
    /// To an exchange without `mandatory`: a message no queue is bound for is dropped by the broker, without an
    /// error (events nobody listens to yet). Still confirmed. The in-memory transport drops it.
    case broadcast(exchange: String, routingKey: String)
}

extension Destination {
    /// Whether a message that reaches no queue is an error (every destination but ``broadcast(exchange:routingKey:)``).
    var isMandatory: Bool {
        if case .broadcast = self { return false }
        return true
    }
}

/// Settles deliveries of one consumer.
@_spi(WarrenTransport)
public protocol DeliverySettler: Sendable {
    func ack(_ tag: UInt64) throws
    /// Returns the delivery to its queue, to be delivered again (marked redelivered).
    func requeue(_ tag: UInt64) throws
    /// Whether a settlement can still reach the broker (the delivery's channel is open): once it cannot, the broker
    /// has the delivery back, or will.
    var canSettle: Bool { get }
}

extension DeliverySettler {
    /// Always: a settler whose deliveries cannot be taken back.
    public var canSettle: Bool { true }
}

/// One delivery from a transport.
@_spi(WarrenTransport)
public struct TransportDelivery: Sendable {
    public var body: [UInt8]
    public var properties: AMQPProperties
    public var redelivered: Bool
    public var exchange: String
    public var routingKey: String
    public var tag: UInt64
    public var settler: any DeliverySettler

    public init(
        body: [UInt8], properties: AMQPProperties, redelivered: Bool, exchange: String, routingKey: String, tag: UInt64,
        settler: any DeliverySettler
    ) {
        self.body = body
        self.properties = properties
        self.redelivered = redelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.tag = tag
        self.settler = settler
    }

    public func ack() throws { try settler.ack(tag) }
    /// Whether it can still be settled (``DeliverySettler/canSettle``).
    public var canSettle: Bool { settler.canSettle }
    public func requeue() throws { try settler.requeue(tag) }
}

/// The deliveries of one queue. ``cancel()`` stops new deliveries; those already handed over still come out of the
/// sequence, then it ends.
@_spi(WarrenTransport)
public struct TransportConsumer: AsyncSequence, Sendable {
    public typealias Element = TransportDelivery
    let nextDelivery: @Sendable () async throws -> TransportDelivery?
    let cancelConsumer: @Sendable () async throws -> Void
    let closeConsumer: @Sendable () async -> Void
    let receivedDeliveries: (@Sendable () -> Int)?

    /// - Parameter received: how many deliveries the transport has received for this consumer so far (`next` may
    ///   not have returned them all yet); a liveness check reads it from any thread. `nil` when the transport
    ///   cannot tell (its consumer loops are then never judged stalled).
    public init(
        next: @escaping @Sendable () async throws -> TransportDelivery?,
        cancel: @escaping @Sendable () async throws -> Void,
        close: @escaping @Sendable () async -> Void,
        received: (@Sendable () -> Int)? = nil
    ) {
        self.nextDelivery = next
        self.cancelConsumer = cancel
        self.closeConsumer = close
        self.receivedDeliveries = received
    }

    /// The next delivery; `nil` once the consumer has ended. (What the iterator calls: for a transport that wraps
    /// another's consumer.)
    public func next() async throws -> TransportDelivery? { try await nextDelivery() }

    /// Deliveries received for this consumer so far; `nil` when the transport cannot tell.
    public var received: Int? { receivedDeliveries?() }

    /// Stops new deliveries; those already received still come out of ``next()``, which then ends. Must return without
    /// waiting for them to be taken or for ``close()``: the worker cancels a consumer from beside its loop (a
    /// shutdown) and waits for that call before the loop's run ends.
    public func cancel() async throws { try await cancelConsumer() }

    /// Ends the consumer; its unsettled deliveries return to the queue.
    public func close() async { await closeConsumer() }

    public func makeAsyncIterator() -> Iterator { Iterator(pull: nextDelivery) }

    public struct Iterator: AsyncIteratorProtocol {
        let pull: @Sendable () async throws -> TransportDelivery?
        public mutating func next() async throws -> TransportDelivery? { try await pull() }
    }
}
