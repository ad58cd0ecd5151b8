import Foundation
import Logging
import Synchronization
import Warren
import WarrenAMQP

/// Runs a worker's registrations on an in-memory transport with a manual clock, so a test can push a message into a
/// handler and assert what happened — acked, retried after which delay, dead-lettered for which reason — without a
/// broker and without sleeping through retry delays.
///
/// ```swift
/// let harness = try await WarrenTestHarness(registrations: [
///     HandlerRegistration(WelcomeEmail.self, queue: "emails", options: .init(retry: policy)) { email, context in … },
/// ])
/// let first = try await harness.send(WelcomeEmail(userId: "1", email: "a@flaky.example"), to: "emails")
/// #expect(first.outcome == .retried(delay: .seconds(1), nextAttempt: 2))
/// let second = try await harness.advance(by: .seconds(1))   // the retry comes back and is handled
/// await harness.stop()
/// ```
public final class WarrenTestHarness: Sendable {
    public let clock: ManualClock
    /// The in-memory transport: publish without waiting, peek at queues, read the dead letters.
    public let transport: InMemoryTransport<ManualClock>
    /// What the worker's transport does: it passes everything to ``transport``, records each publish, confirm, ack and
    /// requeue in order, and fails where the test says (``FaultInjectingTransport``).
    public let faults: FaultInjectingTransport
    public let worker: Worker
    private let settled: SettlementBuffer
    private let running: Task<Void, any Error>

    /// Starts a worker for `registrations`; returns once it consumes every queue.
    public init(
        registrations: [HandlerRegistration], configuration: WorkerConfiguration = WorkerConfiguration(),
        logger: Logger = Logger(label: "warren.testing", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws {
        let clock = ManualClock()
        let transport = InMemoryTransport(clock: clock)
        let faults = FaultInjectingTransport(base: transport)
        let settled = SettlementBuffer()
        let worker = Worker(
            transport: faults, registrations: registrations, configuration: configuration, logger: logger,
            observer: { settled.append($0) })
        self.clock = clock
        self.transport = transport
        self.faults = faults
        self.worker = worker
        self.settled = settled
        // The harness is the worker's service group in a test: it owns this task, and `stop()` ends it (a graceful
        // shutdown, then awaited), so it never outlives the harness's user.
        self.running = Task { try await worker.run() }
        try await worker.waitUntilConsuming(timeout: .seconds(10))
    }

    /// Publishes `message` to `queue` (as a publisher would: JSON, its type, a message id) and waits until the
    /// worker settled it.
    /// - Returns: the settlement of this message, matched by its message id: settlements of other messages (a
    ///   follow-up its handler published, say) stay for ``nextSettlement(timeout:)``.
    @discardableResult
    public func send<M: WarrenMessage>(
        _ message: M, to queue: String, messageID: String = UUID().uuidString, headers: AMQPTable = [:],
        timeout: Duration = .seconds(10)
    ) async throws -> SettlementEvent {
        // As WarrenPublisher publishes it: Warren's publish time in milliseconds, which the worker's queue wait reads.
        let now = Date()
        var headers = headers
        if headers[WarrenHeader.publishedAt] == nil {
            headers[WarrenHeader.publishedAt] = .int64(Int64(now.timeIntervalSince1970 * 1000))
        }
        let properties = AMQPProperties(
            contentType: "application/json", headers: headers, deliveryMode: .persistent,
            messageID: messageID, timestamp: now, type: M.messageType)
        return try await sendRaw(
            try JSONMessageCodec().encode(message), properties: properties, to: queue, timeout: timeout)
    }

    /// Publishes any body and properties (malformed input, unknown types…) and waits until the worker settled it.
    /// - Returns: the settlement of this message when it has a message id (see ``send(_:to:messageID:headers:timeout:)``),
    ///   else the next settlement.
    @discardableResult
    public func sendRaw(
        _ body: [UInt8], properties: AMQPProperties, to queue: String, timeout: Duration = .seconds(10)
    ) async throws -> SettlementEvent {
        try await transport.publish(body, to: .queue(queue), properties: properties)
        guard let id = properties.messageID else { return try await nextSettlement(timeout: timeout) }
        return try await settled.take(timeout: timeout) { $0.messageID == id }
    }

    /// Moves the clock forward, which releases the retries whose delay has passed, and waits for the next settlement.
    @discardableResult
    public func advance(by duration: Duration, timeout: Duration = .seconds(10)) async throws -> SettlementEvent {
        clock.advance(by: duration)
        return try await nextSettlement(timeout: timeout)
    }

    /// Waits for the next delivery the worker settles (the oldest settlement not taken yet).
    /// - Throws: when none is settled within `timeout` (real time).
    public func nextSettlement(timeout: Duration = .seconds(10)) async throws -> SettlementEvent {
        try await settled.take(timeout: timeout) { _ in true }
    }

    /// Settlements that happened and were not yet taken by ``nextSettlement(timeout:)``.
    public var unreadSettlements: [SettlementEvent] { settled.all }

    /// The dead letters of `queue`, oldest first.
    public func deadLetters(of queue: String) -> [DeadLetter] {
        transport.deadLetters(of: queue)
    }

    /// Stops the worker (a graceful shutdown) and waits for it.
    public func stop() async {
        worker.shutdown()
        _ = try? await running.value
    }
}

/// The settlements not yet taken, oldest first; takers wait without polling.
final class SettlementBuffer: Sendable {
    private let events = AwaitableState<[SettlementEvent]>([])

    func append(_ event: SettlementEvent) { events.update { $0.append(event) } }
    var all: [SettlementEvent] { events.value }

    /// Removes and returns the oldest settlement that `matches`, waiting up to `timeout` for one.
    func take(timeout: Duration, matching matches: @escaping @Sendable (SettlementEvent) -> Bool) async throws
        -> SettlementEvent
    {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let taken = events.update { events in events.firstIndex(where: matches).map { events.remove(at: $0) } }
            if let taken { return taken }
            // Another taker may win the one that arrives: then wait again, until the deadline.
            let arrived = await events.wait(
                until: { $0.contains(where: matches) }, timeout: clock.now.duration(to: deadline))
            try Task.checkCancellation()
            guard arrived || clock.now < deadline else {
                throw HarnessError("no delivery was settled within \(timeout)")
            }
        }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
