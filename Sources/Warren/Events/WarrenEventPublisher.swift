import DequeModule
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import WarrenAMQP

/// What a dead letter's event may carry of the message; a host's hook (``EventOptions/redact``) may change it.
public struct DeadLetterContent: Sendable {
    public var body: [UInt8]
    public var headers: AMQPTable

    public init(body: [UInt8], headers: AMQPTable) {
        self.body = body
        self.headers = headers
    }
}

extension WarrenEvent {
    /// Puts a dead letter's headers (as text) and body (up to `bodyLimit` bytes: UTF-8 text when it is, else base64)
    /// in this event, as a ledger shows them.
    package mutating func attach(_ content: DeadLetterContent, bodyLimit: Int) {
        headers = content.headers.mapValues { $0.stringValue ?? "\($0)" }
        let kept = content.body.prefix(bodyLimit)
        bodyTruncated = content.body.count > bodyLimit
        // A cut may split a character: up to three bytes are let go.
        let cuttable = content.body.count > bodyLimit ? min(3, kept.count) : 0
        if let text = (0...cuttable).lazy.compactMap({ String(validating: kept.dropLast($0), as: UTF8.self) }).first {
            body = text
            bodyEncoding = "utf8"
        } else {
            body = Data(kept).base64EncodedString()
            bodyEncoding = "base64"
        }
    }
}

/// How ``WarrenEventPublisher`` batches and bounds what it publishes.
public struct EventOptions: Sendable {
    /// The topic exchange the events go to (declared, durable, by whoever publishes); routing key `<queue>.<event>`.
    public var exchange: String
    /// Events per AMQP message, at most.
    public var batchSize: Int
    /// How long an event may wait for its batch to fill before it is sent anyway.
    public var flushInterval: Duration
    /// Events held while the broker is slow or away; past it, new events are dropped and counted in
    /// `warren_events_dropped_total`. Handlers never wait for events.
    public var bufferLimit: Int
    /// The most of a dead letter's body an event carries (64 KiB); longer ones are cut and marked `body_truncated`.
    public var deadLetterBodyLimit: Int
    /// Per message type: what a dead letter's event may carry of the message (redact fields, drop headers); return
    /// `nil` to leave the body out. Types without a hook carry body and headers as they are.
    public var redact: [String: @Sendable (DeadLetterContent) -> DeadLetterContent?]

    public init(
        exchange: String = "warren.events", batchSize: Int = 200, flushInterval: Duration = .milliseconds(100),
        bufferLimit: Int = 50_000, deadLetterBodyLimit: Int = 64 * 1024,
        redact: [String: @Sendable (DeadLetterContent) -> DeadLetterContent?] = [:]
    ) {
        self.exchange = exchange
        self.batchSize = max(1, batchSize)
        self.flushInterval = flushInterval
        self.bufferLimit = max(1, bufferLimit)
        self.deadLetterBodyLimit = max(0, deadLetterBodyLimit)
        self.redact = redact
    }
}

/// Publishes job events (``WarrenEvent``) for a ledger: a ``Worker`` reports `started` and every settlement, a
/// ``WarrenPublisher`` every confirmed publish, when given one.
///
/// Events go in batches (many per AMQP message, flushed by count and by ``EventOptions/flushInterval``) to the topic
/// exchange `warren.events`, routing key `<queue>.<event>`, message type `warren.events`, persistent and confirmed,
/// without `mandatory`: until a ledger binds a queue, the broker drops them at almost no cost. They never hold up a
/// handler: recording one takes a lock; when the broker is slow or away, events wait in a bounded buffer, and past it
/// new ones are dropped and counted (`warren_events_dropped_total`).
///
/// Batches go out while something sends them: ``run()`` (a `Service`: in a `ServiceGroup`, it sends what is left when
/// the group shuts down, for at most 10 s), or a ``Worker`` given these events while it runs (it sends what is left
/// when it stops, for at most 5 s: a broker that is away does not hold up a shutdown). A process that only publishes
/// runs it as a service; otherwise its events wait until ``flush()`` or ``close(timeout:)``.
public final class WarrenEventPublisher: Service, Sendable {
    public let transport: any WarrenTransport
    public let options: EventOptions
    let logger: Logger
    private let dropped: Counter
    private struct State {
        var buffer = Deque<WarrenEvent>()
        var closed = false
        var exchangeDeclared = false
        /// Whether events are being dropped now (logged once per spell).
        var dropping = false
        /// How many ``sendWhileRunning()`` run now.
        var senders = 0
        /// Whether it was said once that events wait with nothing to send them.
        var warnedUnsent = false
    }
    private let state = Mutex(State())
    /// Counts the times the buffer stopped being empty: what wakes the senders (``sendWhileRunning()``).
    private let arrivals = AwaitableState(0)
    /// Serializes flushes (the background one and ``flush()``).
    private let flushing = AsyncMutex()

    public init(
        transport: any WarrenTransport, options: EventOptions = EventOptions(),
        logger: Logger = Logger(label: "warren.events")
    ) {
        self.transport = transport
        self.options = options
        self.logger = logger
        dropped = Counter(label: WarrenMetric.eventsDropped.name, dimensions: [("exchange", options.exchange)])
    }

    /// Records `event` to be sent with the next batch; returns at once. Drops it (and counts it) when the buffer is full.
    public func record(_ event: WarrenEvent) {
        enum Outcome { case buffered, firstBuffered, unsent, dropped, firstDropped, closed }
        let outcome = state.withLock { state -> Outcome in
            guard !state.closed else { return .closed }
            guard state.buffer.count < options.bufferLimit else {
                defer { state.dropping = true }
                return state.dropping ? .dropped : .firstDropped
            }
            state.buffer.append(event)
            if state.buffer.count == 1 { return .firstBuffered }
            // A batch waits and nothing sends: a process that publishes with events but runs neither the publisher
            // as a service nor a worker given it. Said once, before the buffer fills.
            if state.senders == 0, !state.warnedUnsent, state.buffer.count >= options.batchSize {
                state.warnedUnsent = true
                return .unsent
            }
            return .buffered
        }
        switch outcome {
        case .firstBuffered: arrivals.update { $0 &+= 1 }
        case .unsent:
            logger.warning(
                "job events wait and nothing sends them: run the WarrenEventPublisher in the ServiceGroup, or give it to a running Worker",
                metadata: ["pending": .stringConvertible(options.batchSize)])
        case .firstDropped:
            dropped.increment()
            logger.warning(
                "event buffer full: dropping events until they are sent again (the broker is slow or away, or nothing runs the WarrenEventPublisher)",
                metadata: ["buffer_limit": .stringConvertible(options.bufferLimit)])
        case .dropped: dropped.increment()
        case .buffered, .closed: break
        }
    }

    /// Events waiting to be sent.
    public var pending: Int { state.withLock { $0.buffer.count } }

    /// Sends batches until the calling task is cancelled: once events wait, after ``EventOptions/flushInterval`` (so
    /// that a batch gathers), and again while some are left; asleep while the buffer is empty. Several may run (the
    /// service's ``run()`` and a worker's): their flushes take turns, and one finds nothing left.
    package func sendWhileRunning() async {
        state.withLock { $0.senders += 1 }
        defer { state.withLock { $0.senders -= 1 } }
        while !Task.isCancelled {
            // Read before looking at the buffer: an event recorded in between changes it, so the wait returns at once.
            let seen = arrivals.value
            if pending == 0 {
                do { try await arrivals.wait { $0 != seen } } catch { return }
            }
            do { try await Task.sleep(for: options.flushInterval) } catch { return }
            await flushOnItsOwn(timeout: nil) { await self.flushOnce() }
        }
    }

    /// Runs `flush` on its own and waits for it, until `timeout` (none: no limit) or the calling task's cancellation:
    /// a publish waiting for a broker that does not answer must not hold up a shutdown. (Not in a task group, which
    /// would wait for that publish even after the timeout.) Nobody awaits the flush after that: it is cancelled and
    /// ends by itself; what it could not send goes back to the buffer.
    private func flushOnItsOwn(timeout: Duration?, _ flush: @escaping @Sendable () async -> Void) async {
        let done = AwaitableState(false)
        let flushing = Task {
            await flush()
            done.update { $0 = true }
        }
        if let timeout {
            if !(await done.wait(until: { $0 }, timeout: timeout)) { flushing.cancel() }
        } else {
            do { try await done.wait { $0 } } catch { flushing.cancel() }
        }
    }

    /// Sends everything recorded so far, in batches; returns when the broker confirmed them, or when it could not
    /// (those events stay buffered for the next attempt).
    public func flush() async {
        while await flushOnce() {}
    }

    /// ``flush()``, for at most `timeout` (a broker that is away must not hold up a shutdown); what is not sent by
    /// then stays buffered.
    public func flush(timeout: Duration) async {
        await flushOnItsOwn(timeout: timeout) { await self.flush() }
    }

    /// Sends up to one flush interval's worth; returns whether more is waiting and the last send worked.
    @discardableResult
    private func flushOnce() async -> Bool {
        await flushing.withLock {
            let taken = state.withLock { state -> [WarrenEvent] in
                let count = min(state.buffer.count, options.batchSize * 32)
                defer { state.buffer.removeFirst(count) }
                return Array(state.buffer.prefix(count))
            }
            guard !taken.isEmpty else { return false }
            let events = Self.foldingStarts(taken)
            do {
                try await declareExchangeOnce()
                // One AMQP message per routing key and at most `batchSize` events, in the order each key first
                // appeared (a job's start usually goes out before its settlement; readers still order by time).
                var groups: [String: [WarrenEvent]] = [:]
                var order: [String] = []
                for event in events {
                    let key = "\(event.queue).\(event.event.rawValue)"
                    if groups[key] == nil { order.append(key) }
                    groups[key, default: []].append(event)
                }
                var outbound: [OutboundMessage] = []
                let now = Date()
                for routingKey in order {
                    let events = groups[routingKey]!
                    var start = events.startIndex
                    while start < events.endIndex {
                        let end = min(start + options.batchSize, events.endIndex)
                        outbound.append(
                            OutboundMessage(
                                body: WarrenEvent.encodeBatch(events[start..<end]),
                                destination: .broadcast(exchange: options.exchange, routingKey: routingKey),
                                properties: AMQPProperties(
                                    contentType: "application/json", deliveryMode: .persistent, timestamp: now,
                                    type: "warren.events")))
                        start = end
                    }
                }
                let results = await transport.publish(contentsOf: outbound)
                if let failure = results.lazy.compactMap({ result -> (any Error)? in
                    if case .failure(let error) = result { return error } else { return nil }
                }).first {
                    throw failure
                }
            } catch {
                // Back to the front of the buffer (as far as it has room), to be sent with the next flush.
                let (lost, wasEmpty) = state.withLock { state -> (Int, Bool) in
                    state.exchangeDeclared = false
                    let wasEmpty = state.buffer.isEmpty
                    let room = max(0, options.bufferLimit - state.buffer.count)
                    let kept = taken.prefix(room)
                    state.buffer.insert(contentsOf: kept, at: 0)
                    return (taken.count - kept.count, wasEmpty && !kept.isEmpty)
                }
                if lost > 0 { dropped.increment(by: Int64(lost)) }
                // Back in an empty buffer: a sender asleep until events arrive must take these again.
                if wasEmpty { arrivals.update { $0 &+= 1 } }
                logger.debug(
                    "events not sent; kept for the next flush",
                    metadata: ["error": "\(error)", "events": .stringConvertible(taken.count)])
                return false
            }
            return state.withLock { state in
                if state.buffer.count < options.bufferLimit / 2 { state.dropping = false }
                return !state.buffer.isEmpty
            }
        }
    }

    /// `events` with each `started` whose attempt settled in the same flush folded into the settlement
    /// (``WarrenEvent/startedAtMs``): most jobs take less than a flush interval, and one event each halves what the
    /// broker carries and the ledger writes for them.
    static func foldingStarts(_ events: [WarrenEvent]) -> [WarrenEvent] {
        struct Attempt: Hashable {
            var messageID: String
            var queue: String
            var attempt: Int?
        }
        var starts: [Attempt: Int] = [:]
        var folded: Set<Int> = []
        var result = events
        for (index, event) in events.enumerated() {
            guard let id = event.messageID else { continue }
            let attempt = Attempt(messageID: id, queue: event.queue, attempt: event.attempt)
            switch event.event {
            case .started:
                starts[attempt] = index
            case .ack, .retry, .deadLetter, .requeued:
                guard let start = starts.removeValue(forKey: attempt) else { continue }
                folded.insert(start)
                result[index].startedAtMs = events[start].atMs
                result[index].queueWaitMs = result[index].queueWaitMs ?? events[start].queueWaitMs
                result[index].queueWaitApproxS = result[index].queueWaitApproxS ?? events[start].queueWaitApproxS
            default:
                continue
            }
        }
        guard !folded.isEmpty else { return events }
        return result.enumerated().filter { !folded.contains($0.offset) }.map(\.element)
    }

    private func declareExchangeOnce() async throws {
        guard !state.withLock({ $0.exchangeDeclared }) else { return }
        try await transport.start()
        try await transport.declareTopicExchange(options.exchange)
        state.withLock { $0.exchangeDeclared = true }
    }

    /// Sends what is left (for at most `timeout`); events recorded later are ignored.
    public func close(timeout: Duration = .seconds(10)) async {
        await flush(timeout: timeout)
        state.withLock { $0.closed = true }
    }

    /// Sends batches as events come (see ``sendWhileRunning()``) until the `ServiceGroup`'s graceful shutdown or
    /// cancellation, then sends what is left (``close(timeout:)``).
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.sendWhileRunning() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await close()
    }
}

/// The former name of ``WarrenEventPublisher``.
@available(*, deprecated, renamed: "WarrenEventPublisher")
public typealias WarrenEvents = WarrenEventPublisher
