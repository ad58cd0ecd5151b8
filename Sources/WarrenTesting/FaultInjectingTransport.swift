import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP

/// A transport that passes everything to another (the harness's in-memory one) and fails where a test tells it to —
/// a publish the broker refuses, a confirm that is withheld and then comes negative or positive, an ack that fails
/// because the channel went away — and records, in order, every publish, confirm, ack and requeue the worker asks
/// of it (``steps``). With it a test asserts what Warren promises: no delivery is settled before its retry or
/// dead-letter copy is confirmed, and a copy that is not confirmed leaves the original unacked and back in its queue.
///
/// ```swift
/// let harness = try await WarrenTestHarness(registrations: [emails])
/// harness.faults.failPublishes(to: .retries)               // the broker refuses the retry copy once
/// let settled = try await harness.send(WelcomeEmail(…), to: "emails")
/// #expect(settled.outcome == .requeued)                    // not acked: back in the queue, handled again
/// #expect(harness.faults.steps(of: settled.messageID!).contains(.acked(messageID: settled.messageID)) == false)
/// ```
public final class FaultInjectingTransport: WarrenTransport {
    /// Where a publish goes, as ``Step`` records it.
    public enum Target: Sendable, Hashable, CustomStringConvertible {
        /// Straight into a queue (a re-enqueued redelivery, a follow-up publish).
        case queue(String)
        /// A queue's delay queue: a retry copy.
        case retry(queue: String)
        /// A queue's dead letters.
        case deadLetters(queue: String)
        /// An exchange (events, a follow-up published to an exchange).
        case exchange(String)
        /// A queue, at a time: a message due later (``Destination/due(queue:at:)``).
        case due(queue: String)

        init(_ destination: Destination) {
            switch destination {
            case .queue(let queue): self = .queue(queue)
            case .delay(let queue, _): self = .retry(queue: queue)
            case .deadLetters(let queue): self = .deadLetters(queue: queue)
            case .due(let queue, _): self = .due(queue: queue)
            case .exchange(let exchange, _), .broadcast(let exchange, _): self = .exchange(exchange)
            case .partitioned(let flow): self = .exchange(flow.name)
            }
        }

        public var description: String {
            switch self {
            case .queue(let queue): "queue \(queue)"
            case .retry(let queue): "retry of \(queue)"
            case .deadLetters(let queue): "dead letters of \(queue)"
            case .exchange(let exchange): "exchange \(exchange)"
            case .due(let queue): "queue \(queue) at a time"
            }
        }
    }

    /// Which publishes a fault applies to.
    public enum Selector: Sendable, Hashable {
        /// Retry copies (to a delay queue).
        case retries
        /// Dead-letter copies.
        case deadLetters
        /// Publishes straight into a queue (a redelivery's counted copy, a follow-up).
        case queues
        /// Every publish.
        case any

        func matches(_ target: Target) -> Bool {
            switch (self, target) {
            case (.any, _), (.retries, .retry), (.deadLetters, .deadLetters), (.queues, .queue): true
            default: false
            }
        }
    }

    /// One thing the worker asked of the transport, in the order it happened.
    public enum Step: Sendable, Hashable, CustomStringConvertible {
        /// A publish was handed to the transport; its confirm is awaited.
        case publishSent(messageID: String?, to: Target)
        /// The publish was confirmed: the copy is safe.
        case publishConfirmed(messageID: String?, to: Target)
        /// The publish failed: refused (a negative confirm, unroutable) or its connection was lost before the confirm.
        case publishFailed(messageID: String?, to: Target)
        /// The delivery was acked.
        case acked(messageID: String?)
        /// The ack failed because the channel went away: the broker returns the delivery to its queue, redelivered.
        case ackFailed(messageID: String?)
        /// The delivery was returned to its queue unhandled (its copy was not confirmed, or a shutdown interrupted it).
        case requeued(messageID: String?)

        /// The message id of the message the step is about.
        public var messageID: String? {
            switch self {
            case .publishSent(let id, _), .publishConfirmed(let id, _), .publishFailed(let id, _), .acked(let id),
                .ackFailed(let id),
                .requeued(let id):
                id
            }
        }

        public var description: String {
            switch self {
            case .publishSent(let id, let target): "\(id ?? "-"): publish sent to \(target)"
            case .publishConfirmed(let id, let target): "\(id ?? "-"): publish to \(target) confirmed"
            case .publishFailed(let id, let target): "\(id ?? "-"): publish to \(target) failed"
            case .acked(let id): "\(id ?? "-"): acked"
            case .ackFailed(let id): "\(id ?? "-"): ack failed"
            case .requeued(let id): "\(id ?? "-"): requeued"
            }
        }
    }

    /// The error an injected fault throws.
    public struct InjectedFault: Error, CustomStringConvertible {
        /// What failed, as a sentence.
        public var description: String
    }

    private struct Rule {
        var selector: Selector
        var remaining: Int
    }

    private struct State {
        var failing: [Rule] = []
        var withholding: [Rule] = []
        var failingAcks = 0
        var withheld: [Int: CheckedContinuation<Bool, Never>] = [:]
        var nextWithheld = 0
        var closed = false
    }

    /// The transport everything is passed to.
    public let base: any WarrenTransport
    private let recorded = AwaitableState<[Step]>([])
    private let state = Mutex(State())

    /// A transport that passes everything to `base` (``WarrenTestHarness`` gives it its in-memory transport) and
    /// fails only where told.
    public init(base: any WarrenTransport) {
        self.base = base
    }

    // MARK: Faults

    /// The next `times` publishes `to` the selected targets fail once sent (as a negative confirm does): the caller
    /// gets an error and nothing is stored.
    public func failPublishes(to selector: Selector, times: Int = 1) {
        state.withLock { $0.failing.append(Rule(selector: selector, remaining: times)) }
    }

    /// The confirms of the next `times` publishes `to` the selected targets are withheld: each publish waits, sent
    /// and unconfirmed, until ``releaseConfirms(positive:)``.
    public func withholdConfirms(to selector: Selector, times: Int = 1) {
        state.withLock { $0.withholding.append(Rule(selector: selector, remaining: times)) }
    }

    /// Lets every withheld confirm come: positive (the message is stored and its publish returns) or negative (its
    /// publish throws, as for a nack or a connection lost before the confirm).
    public func releaseConfirms(positive: Bool) {
        let waiting = state.withLock { state in
            defer { state.withheld.removeAll() }
            return state.withheld.values
        }
        for publish in waiting { publish.resume(returning: positive) }
    }

    /// The next `times` acks fail as they do when the channel closed under them: the ack throws, and the delivery
    /// goes back to its queue marked redelivered, as the broker returns a lost channel's unacknowledged deliveries.
    /// (Simplified: a real lost channel also ends its consumer and returns every unacknowledged delivery; here only
    /// this one returns and the consumer goes on.)
    public func failAcks(times: Int = 1) {
        state.withLock { $0.failingAcks += times }
    }

    // MARK: What happened

    /// Every step so far, oldest first.
    public var steps: [Step] { recorded.value }

    /// The steps of one message id, oldest first.
    public func steps(of messageID: String) -> [Step] { recorded.value.filter { $0.messageID == messageID } }

    /// Waits until a step that `matches` has happened.
    /// - Throws: ``InjectedFault`` when none happened within `timeout` (real time).
    public func waitForStep(timeout: Duration = .seconds(10), where matches: @escaping @Sendable (Step) -> Bool)
        async throws
    {
        guard await recorded.wait(until: { $0.contains(where: matches) }, timeout: timeout) else {
            throw InjectedFault(description: "no such step within \(timeout); steps: \(steps)")
        }
    }

    private func record(_ step: Step) {
        recorded.update { $0.append(step) }
    }

    private static func take(_ rules: inout [Rule], for target: Target) -> Bool {
        guard let index = rules.firstIndex(where: { $0.remaining > 0 && $0.selector.matches(target) }) else {
            return false
        }
        rules[index].remaining -= 1
        if rules[index].remaining == 0 { rules.remove(at: index) }
        return true
    }

    // MARK: WarrenTransport

    @_spi(WarrenTransport)
    public func start() async throws { try await base.start() }

    @_spi(WarrenTransport)
    public func prepare(queue: String, delays: Set<Duration>) async throws {
        try await base.prepare(queue: queue, delays: delays)
    }

    @_spi(WarrenTransport)
    public func consume(queue: String, prefetch: UInt16) async throws -> TransportConsumer {
        recorded(try await base.consume(queue: queue, prefetch: prefetch))
    }

    /// The base's exclusive consumer, its settlements recorded (and failed where the test says) like any other's.
    @_spi(WarrenTransport)
    public func consumeExclusively(queue: String, prefetch: UInt16) async throws -> TransportConsumer? {
        try await base.consumeExclusively(queue: queue, prefetch: prefetch).map(recorded)
    }

    @_spi(WarrenTransport)
    public func prepare(flow: PartitionedFlow) async throws { try await base.prepare(flow: flow) }

    @_spi(WarrenTransport)
    public func join(flow: PartitionedFlow) async throws -> FlowMembership { try await base.join(flow: flow) }

    @_spi(WarrenTransport)
    public func countReturn(of messageKey: String, in queue: String) async throws -> Int {
        try await base.countReturn(of: messageKey, in: queue)
    }

    private func recorded(_ consumer: TransportConsumer) -> TransportConsumer {
        let next: @Sendable () async throws -> TransportDelivery? = { [self] in
            guard var delivery = try await consumer.next() else { return nil }
            delivery.settler = Settler(
                base: delivery.settler, messageID: delivery.properties.messageID, transport: self)
            return delivery
        }
        let counts: @Sendable () -> Int = { consumer.received ?? 0 }
        let received = consumer.received == nil ? nil : counts
        return TransportConsumer(
            next: next, cancel: { try await consumer.cancel() }, close: { await consumer.close() }, received: received)
    }

    @_spi(WarrenTransport)
    public func publish(_ body: [UInt8], to destination: Destination, properties: AMQPProperties) async throws {
        let target = Target(destination)
        let id = properties.messageID
        let (fails, withholds, closed) = state.withLock { state in
            let fails = Self.take(&state.failing, for: target)
            return (fails, !fails && Self.take(&state.withholding, for: target), state.closed)
        }
        if withholds && !closed {
            let slot = state.withLock { state in
                defer { state.nextWithheld += 1 }
                return state.nextWithheld
            }
            // Waits until released, or the task is cancelled, or the transport closes (then the confirm is negative).
            let positive = await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let now = state.withLock { state -> Bool in
                        if state.closed || Task.isCancelled { return true }
                        state.withheld[slot] = continuation
                        return false
                    }
                    // Recorded once the publish waits, so a test that saw it can release it.
                    record(.publishSent(messageID: id, to: target))
                    if now { continuation.resume(returning: false) }
                }
            } onCancel: {
                state.withLock { $0.withheld.removeValue(forKey: slot) }?.resume(returning: false)
            }
            guard positive else {
                record(.publishFailed(messageID: id, to: target))
                throw InjectedFault(description: "the confirm of a publish to \(target) came negative")
            }
        } else if fails {
            record(.publishSent(messageID: id, to: target))
            record(.publishFailed(messageID: id, to: target))
            throw InjectedFault(description: "the broker refused a publish to \(target)")
        }
        if !withholds || closed { record(.publishSent(messageID: id, to: target)) }
        do {
            try await base.publish(body, to: destination, properties: properties)
        } catch {
            record(.publishFailed(messageID: id, to: target))
            throw error
        }
        record(.publishConfirmed(messageID: id, to: target))
    }

    /// Closes the base; a confirm still withheld comes negative.
    @_spi(WarrenTransport)
    public func close() async {
        let waiting = state.withLock { state in
            state.closed = true
            defer { state.withheld.removeAll() }
            return state.withheld.values
        }
        for publish in waiting { publish.resume(returning: false) }
        await base.close()
    }

    @_spi(WarrenTransport)
    public func isRecoverable(_ error: any Error) -> Bool {
        error is InjectedFault ? false : base.isRecoverable(error)
    }

    @_spi(WarrenTransport)
    public func isConsumerCancellation(_ error: any Error) -> Bool { base.isConsumerCancellation(error) }

    @_spi(WarrenTransport)
    public func declareTopicExchange(_ name: String) async throws { try await base.declareTopicExchange(name) }

    /// The base transport's elections, untouched.
    @_spi(WarrenTransport)
    public func campaign(for election: String) async throws -> (any LeadershipTerm)? {
        try await base.campaign(for: election)
    }

    /// The base's.
    public var isConnected: Bool { base.isConnected }

    private struct Settler: DeliverySettler {
        let base: any DeliverySettler
        let messageID: String?
        let transport: FaultInjectingTransport

        func ack(_ tag: UInt64) throws {
            let fails = transport.state.withLock { state in
                guard state.failingAcks > 0 else { return false }
                state.failingAcks -= 1
                return true
            }
            if fails {
                // The channel is gone: the broker puts the delivery back, marked redelivered.
                transport.record(.ackFailed(messageID: messageID))
                try base.requeue(tag)
                throw InjectedFault(description: "the channel closed before the ack")
            }
            try base.ack(tag)
            transport.record(.acked(messageID: messageID))
        }

        func requeue(_ tag: UInt64) throws {
            // Recorded first: the requeued delivery may be handed to a consumer at once.
            transport.record(.requeued(messageID: messageID))
            try base.requeue(tag)
        }

        var canSettle: Bool { base.canSettle }
    }
}
