import DequeModule
import Foundation
import ServiceLifecycle
import Synchronization
import WarrenAMQP

/// A transport in memory, with RabbitMQ's semantics where Warren relies on them: prefetch-bounded delivery,
/// ack and requeue (redelivered flag), delay queues that return a message to its queue once its delay has passed
/// on `clock`, and dead letters that can be listed. For a host that runs without a broker (embedded), and the
/// base of `WarrenTesting` (with a manual clock, delays pass without sleeping).
///
/// Messages live in this process only: they are lost when it exits. A host chooses it out loud (it is never a
/// fallback for a missing broker URL); as a `Service` it closes when its `ServiceGroup` shuts down.
public final class InMemoryTransport<C: Clock>: WarrenTransport, Service where C.Duration == Duration {
    let clock: C
    private let state = Mutex(InMemoryState())
    private let elections = InMemoryElections()

    /// A stored message: a dead letter, or one waiting in a queue.
    public typealias StoredMessage = InMemoryStoredMessage
    private typealias State = InMemoryState

    public init(clock: C) {
        self.clock = clock
    }

    public func start() async throws {}

    @_spi(WarrenTransport)
    public func prepare(queue: String, delays: Set<Duration>) async throws {
        state.withLock { state in
            if state.queues[queue] == nil { state.queues[queue] = InMemoryQueueState() }
            if state.deadLetters[queue] == nil { state.deadLetters[queue] = [] }
        }
    }

    @_spi(WarrenTransport)
    public func consume(queue: String, prefetch: UInt16) async throws -> TransportConsumer {
        state.withLock { state in
            state.nextConsumer += 1
            state.queues[queue, default: InMemoryQueueState()].consumer = InMemoryConsumerState(
                prefetch: prefetch == 0 ? Int.max : Int(prefetch), id: state.nextConsumer)
        }
        return consumer(of: queue)
    }

    @_spi(WarrenTransport)
    public func prepare(flow: PartitionedFlow) async throws {
        for queue in flow.queues { try await prepare(queue: queue, delays: []) }
    }

    /// The queue's consumer unless it has one (a queue has one consumer in memory): what another worker sharing the
    /// transport holds, as another process would on a broker.
    @_spi(WarrenTransport)
    public func consumeExclusively(queue: String, prefetch: UInt16) async throws -> TransportConsumer? {
        let taken = state.withLock { state -> Bool in
            guard state.queues[queue]?.consumer == nil else { return false }
            state.nextConsumer += 1
            state.queues[queue, default: InMemoryQueueState()].consumer = InMemoryConsumerState(
                prefetch: prefetch == 0 ? Int.max : Int(prefetch), id: state.nextConsumer)
            return true
        }
        return taken ? consumer(of: queue) : nil
    }

    /// Counts the workers sharing the transport that joined `flow`, each as another process would on a broker.
    @_spi(WarrenTransport)
    public func join(flow: PartitionedFlow) async throws -> FlowMembership {
        state.withLock { $0.members[flow.name, default: 0] += 1 }
        let left = Mutex(false)
        return FlowMembership(
            members: { [self] in state.withLock { $0.members[flow.name] ?? 0 } },
            leave: { [self] in
                let first = left.withLock { left -> Bool in
                    defer { left = true }
                    return !left
                }
                guard first else { return }
                state.withLock { $0.members[flow.name, default: 1] -= 1 }
            })
    }

    @_spi(WarrenTransport)
    public func countReturn(of messageKey: String, in queue: String) async throws -> Int {
        state.withLock { state in
            var count = 1
            if let previous = state.returns[queue], previous.key == messageKey { count = previous.count &+ 1 }
            state.returns[queue] = (messageKey, count)
            return count
        }
    }

    /// The queue's consumer now, as a `TransportConsumer` whose cancel and close touch it only: once it closed, the
    /// queue may have another (another worker's), which they leave alone.
    private func consumer(of queue: String) -> TransportConsumer {
        let id = state.withLock { $0.queues[queue]?.consumer?.id ?? 0 }
        return TransportConsumer(
            next: { [self] in try await next(queue: queue) },
            cancel: { [self] in cancelConsumer(queue: queue, id: id) },
            close: { [self] in closeConsumer(queue: queue, id: id) })
    }

    /// Puts a message where `destination` says, as a publisher's would arrive (in a test: any bytes and properties,
    /// without waiting for a worker). Returns at once.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for a ``Destination/due(queue:at:)`` the broker's cascade
    ///   would refuse (too far ahead, a queue name it cannot route to); nothing else.
    public func publish(_ body: [UInt8], to destination: Destination, properties: AMQPProperties) async throws {
        let message = StoredMessage(
            body: body, properties: properties, redelivered: false, exchange: "", routingKey: "")
        switch destination {
        case .queue(let queue):
            enqueue(with(message, exchange: "", routingKey: queue), into: queue)
        case .exchange(let exchange, let routingKey):
            enqueue(with(message, exchange: exchange, routingKey: routingKey), into: routingKey)
        case .partitioned(let flow):
            // Not RabbitMQ's hash, but as stable: one key, one partition.
            let key = properties.headers?[WarrenHeader.partitionKey]?.stringValue ?? ""
            let partition = flow.queue(Int(PartitionHash.fnv1a(key) % UInt64(flow.partitions)))
            enqueue(with(message, exchange: flow.name, routingKey: ""), into: partition)
        case .broadcast:
            break  // no exchanges and no bindings in memory: nobody listens
        case .deadLetters(let queue):
            state.withLock {
                $0.deadLetters[queue, default: []].append(
                    with(message, exchange: WarrenTopology.deadLetterExchange, routingKey: queue))
            }
        case .delay(let queue, let delay):
            // Like a delay queue's TTL: the message comes back to the queue (through the default exchange).
            enqueue(message, into: queue, after: delay)
        case .due(let queue, let dueTime):
            // As the broker's cascade would: the delay (whole seconds, rounded up) counts from now, on `clock`.
            let steps = try DelayCascade.steps(toQueue: queue, at: dueTime)
            guard steps > 0 else { return enqueue(with(message, exchange: "", routingKey: queue), into: queue) }
            enqueue(message, into: queue, after: .seconds(steps))
        }
    }

    private func enqueue(_ message: StoredMessage, into queue: String, after delay: Duration) {
        state.withLock { $0.pendingDelays += 1 }
        let deadline = clock.now.advanced(by: delay)
        // The broker's TTL timer, played by the transport: nobody awaits it; it ends when the clock passes the
        // deadline (a `ManualClock` advanced by the test, or real time), and `delayedCount` tells a test it waits.
        Task { [self] in
            try? await clock.sleep(until: deadline, tolerance: nil)
            enqueue(with(message, exchange: "", routingKey: queue), into: queue)
            state.withLock { $0.pendingDelays -= 1 }
        }
    }

    public func close() async {
        let queues = state.withLock { Array($0.queues.keys) }
        for queue in queues { closeConsumer(queue: queue) }
    }

    /// Nothing in memory can be lost and come back: no error of this transport is recoverable.
    @_spi(WarrenTransport)
    public func isRecoverable(_ error: any Error) -> Bool { false }

    /// Keeps the transport until the `ServiceGroup` shuts down gracefully or the task is cancelled, then closes it.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    // MARK: Leadership

    /// Elections in this process: the first campaign wins, the term holds until it resigns or
    /// ``endLeadership(of:)``.
    @_spi(WarrenTransport)
    public func campaign(for election: String) async throws -> (any LeadershipTerm)? {
        try elections.campaign(election) { [self] message in
            try await publish(message.body, to: message.destination, properties: message.properties)
        }
    }

    /// Ends the current term of `election`, as a broker does when the leader's connection goes: what a test does to
    /// make a leader lose its leadership.
    public func endLeadership(of election: String) {
        elections.end(election)
    }

    /// Pauses or resumes the schedule `name` (what an operator does).
    public func setSchedulePaused(_ paused: Bool, schedule name: String) {
        elections.setPaused(paused, schedule: name)
    }

    /// What the leader of the scheduler of `scope` says of its schedules, each one's pause flag read now; `nil` before
    /// one has led.
    public func scheduleDirectory(scope: String? = nil) -> ScheduleDirectory? {
        guard var directory = elections.directory(in: ScheduleDirectory.queue(scope: scope)) else { return nil }
        for index in directory.schedules.indices {
            directory.schedules[index].paused = elections.scheduleState(directory.schedules[index].stateName).paused
        }
        return directory
    }

    /// Asks the leader for a run of schedule `stateName` now (taken by the leader when it comes; kept until then).
    @discardableResult
    public func triggerSchedule(
        _ stateName: String, requestID: String = UUID().uuidString.lowercased(), requestedBy: String? = nil
    ) throws -> String {
        guard LeadershipNames.isValid(stateName), ScheduleTrigger.isValidRequestID(requestID) else {
            throw WarrenError(.invalidConfiguration, "no schedule '\(stateName)' or request id '\(requestID)' can be")
        }
        elections.trigger(stateName, requestID: requestID, requestedBy: requestedBy)
        return requestID
    }

    /// The schedule `name`'s last recorded tick and pause flag.
    @_spi(WarrenTransport)
    public func scheduleState(_ name: String) -> ScheduleState {
        elections.scheduleState(name)
    }

    // MARK: Inspection

    /// The dead letters of `queue`, oldest first.
    public func deadLetters(of queue: String) -> [DeadLetter] {
        state.withLock { $0.deadLetters[queue] ?? [] }.map { DeadLetter(body: $0.body, properties: $0.properties) }
    }

    /// Removes and returns the dead letters of `queue`, oldest first.
    public func removeDeadLetters(of queue: String) -> [DeadLetter] {
        state.withLock { state in
            defer { state.deadLetters[queue] = [] }
            return state.deadLetters[queue] ?? []
        }.map { DeadLetter(body: $0.body, properties: $0.properties) }
    }

    /// Ready and unacknowledged messages of `queue`.
    public func depth(of queue: String) -> (ready: Int, unacked: Int) {
        state.withLock { ($0.queues[queue]?.ready.count ?? 0, $0.queues[queue]?.unacked.count ?? 0) }
    }

    /// The ready messages of `queue`, head first, without taking them.
    public func peek(_ queue: String) -> [StoredMessage] {
        state.withLock { Array($0.queues[queue]?.ready ?? []) }
    }

    /// Messages waiting out a retry delay or their due time.
    public var delayedCount: Int { state.withLock { $0.pendingDelays } }

    // MARK: Internals

    private func with(_ message: StoredMessage, exchange: String, routingKey: String) -> StoredMessage {
        var copy = message
        copy.exchange = exchange
        copy.routingKey = routingKey
        return copy
    }

    private func enqueue(_ message: StoredMessage, into queue: String, atFront: Bool = false) {
        let handoff = state.withLock {
            state -> (CheckedContinuation<TransportDelivery?, any Error>, StoredMessage, UInt64)? in
            if atFront {
                state.queues[queue, default: InMemoryQueueState()].ready.prepend(message)
            } else {
                state.queues[queue, default: InMemoryQueueState()].ready.append(message)
            }
            return Self.takeHandoff(&state, queue: queue)
        }
        if let (waiter, message, tag) = handoff {
            waiter.resume(returning: delivery(message, tag: tag, queue: queue))
        }
    }

    /// When the queue's consumer waits and may take one more, moves the head message to unacked for it.
    private static func takeHandoff(_ state: inout State, queue: String) -> (
        CheckedContinuation<TransportDelivery?, any Error>, StoredMessage, UInt64
    )? {
        guard let consumer = state.queues[queue]?.consumer, !consumer.cancelled, let waiter = consumer.waiter,
            canTake(state, queue: queue, prefetch: consumer.prefetch)
        else { return nil }
        state.queues[queue]!.consumer!.waiter = nil
        let (message, tag) = takeHead(&state, queue: queue)
        return (waiter, message, tag)
    }

    private static func canTake(_ state: State, queue: String, prefetch: Int) -> Bool {
        (state.queues[queue]?.ready.count ?? 0) > 0 && (state.queues[queue]?.unacked.count ?? 0) < prefetch
    }

    /// Moves the head of `queue`'s ready messages to its unacknowledged ones. Mutates in place: a copy of the queue's
    /// state taken out of the dictionary would make every take copy all of its messages.
    private static func takeHead(_ state: inout State, queue: String) -> (StoredMessage, UInt64) {
        let tag = state.nextTag
        state.nextTag += 1
        let message = state.queues[queue]!.ready.removeFirst()
        state.queues[queue]!.unacked[tag] = message
        return (message, tag)
    }

    private func delivery(_ message: StoredMessage, tag: UInt64, queue: String) -> TransportDelivery {
        TransportDelivery(
            body: message.body, properties: message.properties, redelivered: message.redelivered,
            exchange: message.exchange, routingKey: message.routingKey, tag: tag,
            settler: Settler(transport: self, queue: queue))
    }

    private enum Immediate {
        case message(StoredMessage, UInt64)
        case end
        case cancelled
    }

    private func next(queue: String) async throws -> TransportDelivery? {
        let waiterID = state.withLock { state -> UInt64 in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation {
                (continuation: CheckedContinuation<TransportDelivery?, any Error>) in
                let immediate = state.withLock { state -> Immediate? in
                    guard let consumer = state.queues[queue]?.consumer else { return .end }
                    if Task.isCancelled { return .cancelled }
                    if consumer.cancelled { return .end }
                    if Self.canTake(state, queue: queue, prefetch: consumer.prefetch) {
                        let (message, tag) = Self.takeHead(&state, queue: queue)
                        return .message(message, tag)
                    }
                    state.queues[queue]!.consumer!.waiter = continuation
                    state.queues[queue]!.consumer!.waiterID = waiterID
                    return nil
                }
                switch immediate {
                case .message(let message, let tag)?:
                    continuation.resume(returning: delivery(message, tag: tag, queue: queue))
                case .end?: continuation.resume(returning: nil)
                case .cancelled?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<TransportDelivery?, any Error>? in
                guard var consumer = state.queues[queue]?.consumer, consumer.waiterID == waiterID,
                    let waiter = consumer.waiter
                else { return nil }
                consumer.waiter = nil
                state.queues[queue]?.consumer = consumer
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Cancels the queue's consumer: `id`'s only, when given.
    private func cancelConsumer(queue: String, id: UInt64? = nil) {
        let waiter = state.withLock { state -> CheckedContinuation<TransportDelivery?, any Error>? in
            guard var consumer = state.queues[queue]?.consumer, id == nil || consumer.id == id else { return nil }
            consumer.cancelled = true
            let waiter = consumer.waiter
            consumer.waiter = nil
            state.queues[queue]?.consumer = consumer
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Ends the consumer (`id`'s only, when given) and returns its unacknowledged messages to the head of the queue,
    /// marked redelivered.
    private func closeConsumer(queue: String, id: UInt64? = nil) {
        cancelConsumer(queue: queue, id: id)
        state.withLock { state in
            if let id, state.queues[queue]?.consumer?.id != id { return }
            guard let unacked = state.queues[queue]?.unacked else { return }
            let returned = unacked.sorted { $0.key < $1.key }.map { entry -> StoredMessage in
                var message = entry.value
                message.redelivered = true
                return message
            }
            state.queues[queue]!.unacked.removeAll()
            state.queues[queue]!.ready.insert(contentsOf: returned, at: 0)
            state.queues[queue]!.consumer = nil
        }
    }

    fileprivate func ack(_ tag: UInt64, queue: String) throws {
        let handoff = try state.withLock {
            state -> (CheckedContinuation<TransportDelivery?, any Error>, StoredMessage, UInt64)? in
            guard state.queues[queue]?.unacked.removeValue(forKey: tag) != nil else {
                throw Self.unknownTag(tag, queue: queue)
            }
            return Self.takeHandoff(&state, queue: queue)
        }
        if let (waiter, message, tag) = handoff { waiter.resume(returning: delivery(message, tag: tag, queue: queue)) }
    }

    fileprivate func requeue(_ tag: UInt64, queue: String) throws {
        let handoff = try state.withLock {
            state -> (CheckedContinuation<TransportDelivery?, any Error>, StoredMessage, UInt64)? in
            guard var message = state.queues[queue]?.unacked.removeValue(forKey: tag) else {
                throw Self.unknownTag(tag, queue: queue)
            }
            message.redelivered = true
            state.queues[queue]?.ready.prepend(message)
            return Self.takeHandoff(&state, queue: queue)
        }
        if let (waiter, message, tag) = handoff { waiter.resume(returning: delivery(message, tag: tag, queue: queue)) }
    }

    private static func unknownTag(_ tag: UInt64, queue: String) -> WarrenError {
        WarrenError(
            .settlementRefused, "unknown delivery tag \(tag) on '\(queue)': already settled, or its consumer was closed"
        )
    }

    struct Settler: DeliverySettler {
        let transport: InMemoryTransport
        let queue: String
        func ack(_ tag: UInt64) throws { try transport.ack(tag, queue: queue) }
        func requeue(_ tag: UInt64) throws { try transport.requeue(tag, queue: queue) }
    }
}

/// A message stored by ``InMemoryTransport``: a dead letter, or one waiting in a queue.
public struct InMemoryStoredMessage: Sendable {
    public var body: [UInt8]
    public var properties: AMQPProperties
    public var redelivered: Bool
    public var exchange: String
    public var routingKey: String
}

// The transport's state lives outside the generic class: nested in it, every access would look up generic metadata
// for the clock type (a sixth of the in-memory worker's CPU).
struct InMemoryQueueState {
    var ready: Deque<InMemoryStoredMessage> = []
    var unacked: [UInt64: InMemoryStoredMessage] = [:]
    var consumer: InMemoryConsumerState?
}

struct InMemoryConsumerState {
    var prefetch: Int
    /// Which consumer it is (``InMemoryTransport``'s count): a closed consumer's handle leaves its successor alone.
    var id: UInt64 = 0
    var waiter: CheckedContinuation<TransportDelivery?, any Error>?
    var waiterID: UInt64 = 0
    var cancelled = false
}

struct InMemoryState {
    var queues: [String: InMemoryQueueState] = [:]
    var deadLetters: [String: [InMemoryStoredMessage]] = [:]
    var nextTag: UInt64 = 1
    var nextWaiter: UInt64 = 1
    var nextConsumer: UInt64 = 0
    var pendingDelays = 0
    /// Per ordered queue: the message last counted as returned, and its count (``InMemoryTransport/countReturn(of:in:)``).
    var returns: [String: (key: String, count: Int)] = [:]
    /// Per ordered flow: how many workers joined it.
    var members: [String: Int] = [:]
}

extension InMemoryTransport where C == ContinuousClock {
    /// An in-memory transport on the real clock.
    public convenience init() {
        self.init(clock: ContinuousClock())
    }
}
