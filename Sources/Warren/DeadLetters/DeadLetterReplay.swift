import Foundation
import WarrenAMQP

/// Sends dead letters from a work queue's dead-letter queue back to work, over AMQP alone.
public enum DeadLetterReplay {
    /// Walks `queue`'s dead letters (`basic.get`, in queue order, up to the count the queue had when it began) and
    /// replays each one `matching` accepts: published to its original queue with ``DeadLetter/replayProperties(now:)``
    /// (same message id, attempt count reset) marked with `replayID` (``WarrenHeader/replayID``), confirmed by the
    /// broker, and only then acked off the dead-letter queue. A failure in between leaves a duplicate, never a loss;
    /// the dead letters not replayed stay where they were.
    ///
    /// - Returns: a `replayed` event per message replayed, for a ledger (send them with ``report(_:on:exchange:)``).
    /// - Throws: ``AMQPError`` (404 when `queue` has no dead-letter queue: it is not a queue a worker declared).
    public static func replay(
        from queue: String, on connection: AMQPConnection, replayID: String? = nil, limit: Int? = nil,
        matching: (DeadLetter) -> Bool
    ) async throws -> [WarrenEvent] {
        let publisher = try await connection.openChannel()
        do {
            try await publisher.enableConfirms()
            let events = try await walk(queue, on: connection, limit: limit, matching: matching) { letter, delivery in
                let (copy, event) = replayCopy(of: letter, fallbackQueue: queue, replayID: replayID)
                try await publisher.publish(contentsOf: [copy])[0].get()
                try delivery.ack()
                return event
            }
            try? await publisher.close()
            return events
        } catch {
            try? await publisher.close()
            throw error
        }
    }

    /// The copy that sends `letter` back to work: to the queue it failed on (else `fallbackQueue`), with
    /// ``DeadLetter/replayProperties(now:)`` and, when given, `replayID` in ``WarrenHeader/replayID``; mandatory (a
    /// queue that is gone fails the publish rather than losing the copy). With it, the `replayed` event to report,
    /// timed now: before the publish, since a worker may take the copy and report its attempt before this event is
    /// sent, and a ledger orders a job's events by time.
    public static func replayCopy(of letter: DeadLetter, fallbackQueue: String, replayID: String?) -> (
        AMQPOutboundMessage, WarrenEvent
    ) {
        let target = letter.replayQueue(fallback: fallbackQueue)
        let event = Self.event(.replayed, of: letter, queue: target)
        var properties = letter.replayProperties()
        if let replayID {
            properties.headers = (properties.headers ?? [:]).merging([WarrenHeader.replayID: .string(replayID)]) { $1 }
        }
        return (
            AMQPOutboundMessage(body: letter.body, routingKey: target, mandatory: true, properties: properties), event
        )
    }

    /// Replays dead letters that are not in a queue (a ledger holds them): each published as
    /// ``replayCopy(of:fallbackQueue:replayID:)`` makes it, pipelined, on `publisher` (a channel in confirm mode).
    /// - Returns: per letter, in order, its `replayed` event once the broker confirmed its copy, or why not.
    public static func replay(
        _ letters: [(letter: DeadLetter, queue: String)], replayID: String?, on publisher: AMQPChannel
    ) async -> [Result<WarrenEvent, AMQPError>] {
        let copies = letters.map { replayCopy(of: $0.letter, fallbackQueue: $0.queue, replayID: replayID) }
        let results = await publisher.publish(contentsOf: copies.map(\.0))
        return zip(copies, results).map { copy, result in result.map { copy.1 } }
    }

    /// The `purged` event of a dead letter deleted for good.
    public static func purgedEvent(of letter: DeadLetter, queue: String) -> WarrenEvent {
        event(.purged, of: letter, queue: letter.replayQueue(fallback: queue))
    }

    /// Deletes the dead letters of `queue` that `matching` accepts (acked off the dead-letter queue, not sent
    /// anywhere), walking it as ``replay(from:on:replayID:limit:matching:)`` does.
    /// - Returns: a `purged` event per message deleted, for a ledger.
    /// - Throws: ``AMQPError`` (404 when `queue` has no dead-letter queue).
    public static func purge(from queue: String, on connection: AMQPConnection, matching: (DeadLetter) -> Bool)
        async throws -> [WarrenEvent]
    {
        try await walk(queue, on: connection, limit: nil, matching: matching) { letter, delivery in
            try delivery.ack()
            return purgedEvent(of: letter, queue: queue)
        }
    }

    /// Takes `queue`'s dead letters one by one (`basic.get`, up to the count the queue had when it began, at most
    /// `limit` matching ones) on a channel of its own and hands those `matching` accepts to `settle`; the others stay
    /// unacked and go back to the queue, in their order, when the channel closes.
    private static func walk(
        _ queue: String, on connection: AMQPConnection, limit: Int?, matching: (DeadLetter) -> Bool,
        settle: (DeadLetter, AMQPDelivery) async throws -> WarrenEvent
    ) async throws -> [WarrenEvent] {
        let deadLetterQueue = WarrenTopology(queue: queue).deadLetterQueue
        let reader = try await connection.openChannel()
        var events: [WarrenEvent] = []
        do {
            var remaining = try await reader.queueStatus(deadLetterQueue).messageCount
            while remaining > 0, events.count < (limit ?? .max),
                let result = try await reader.get(queue: deadLetterQueue)
            {
                remaining -= 1
                let letter = DeadLetter(body: result.delivery.body, properties: result.delivery.properties)
                guard matching(letter) else { continue }
                events.append(try await settle(letter, result.delivery))
            }
        } catch {
            try? await reader.close()
            throw error
        }
        try? await reader.close()
        return events
    }

    private static func event(_ kind: WarrenEvent.Kind, of letter: DeadLetter, queue: String) -> WarrenEvent {
        WarrenEvent(
            event: kind, messageID: letter.properties.messageID, type: letter.properties.warrenMessageType,
            queue: queue,
            atMs: Int64((Date().timeIntervalSince1970 * 1000).rounded()), host: ProcessInfo.processInfo.hostName,
            correlationID: letter.properties.correlationID)
    }

    /// Tells a ledger about replays (and purges): the events to `exchange` (declared topic, durable), routing key
    /// `<queue>.<event>`, confirmed, not mandatory (nobody listening costs nothing).
    /// - Throws: ``AMQPError`` when they could not be sent; the replays are done whatever happens here.
    public static func report(
        _ events: [WarrenEvent], on connection: AMQPConnection, exchange: String = "warren.events"
    ) async throws {
        guard !events.isEmpty else { return }
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        try await channel.exchangeDeclare(exchange, type: .topic, durable: true)
        let now = Date()
        for (routingKey, batch) in Dictionary(grouping: events, by: { "\($0.queue).\($0.event.rawValue)" }) {
            try await channel.publish(
                WarrenEvent.encodeBatch(batch), exchange: exchange, routingKey: routingKey,
                properties: AMQPProperties(
                    contentType: "application/json", deliveryMode: .persistent, timestamp: now, type: "warren.events"))
        }
        try? await channel.close()
    }
}
