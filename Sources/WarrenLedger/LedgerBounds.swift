import Foundation
import Logging
import Metrics
import Warren

/// What a ledger keeps of what it is sent. Anyone who may publish to the events exchange can send anything, so the
/// store is bounded whatever arrives: a field too long is cut, an event past its job's bound is skipped (each counted in
/// `warren_ledger_bounded_total` and logged), and the rest of the batch — other jobs' events — is recorded. Only a
/// batch that is malformed or larger than ``eventsPerBatch`` or ``batchBytes`` goes to the ledger queue's dead letters,
/// with the reason. docs/ledger.md, "Bounds".
public enum LedgerBounds {
    /// Events in one `warren.events` message (Warren's own publishers send at most ``EventOptions/batchSize``, 200).
    public static let eventsPerBatch = 1_000
    /// Bytes of one `warren.events` message.
    public static let batchBytes = 8 * 1024 * 1024
    /// A message id, a type, a queue, a host, a reason, a trace or correlation id: AMQP's short strings hold 255 bytes;
    /// an event whose message id is longer is skipped (no AMQP message has it), the others are cut.
    public static let nameBytes = 255
    /// An error's text.
    public static let errorBytes = 8 * 1024
    /// A dead letter's headers: how many, and each value's bytes.
    public static let headerCount = 64
    public static let headerValueBytes = 4 * 1024
    /// A dead letter's body as an event carries it (the whole message of a dead letter taken off its queue is kept
    /// apart, for replays).
    public static let bodyBytes = 256 * 1024
    /// Events recorded for one job; a job's page shows at most these.
    public static let eventsPerJob = 1_000
    /// Dead letters recorded for one job (each replay that fails again adds one); its dead letters' page shows at
    /// most these.
    public static let deadLettersPerJob = 100

    /// What a bound did, as the `bound` label of `warren_ledger_bounded_total` says it.
    public enum Effect: String, Sendable, CaseIterable {
        /// A field was cut to its bound.
        case fieldCut = "field_cut"
        /// An event was skipped: its message id is longer than any AMQP message id, or holds a NUL.
        case badMessageID = "bad_message_id"
        /// An event was skipped: its job has ``LedgerBounds/eventsPerJob`` events already.
        case eventsPerJob = "events_per_job"
        /// A dead letter was not recorded: its job has ``LedgerBounds/deadLettersPerJob`` already.
        case deadLettersPerJob = "dead_letters_per_job"
    }

    /// `event` with every field within its bound and no NUL character (PostgreSQL's text cannot hold one: U+FFFD
    /// stands in); `nil` when it cannot be recorded at all (its message id is too long or holds a NUL). `cut` is set
    /// when something was changed.
    static func bounded(_ event: WarrenEvent, cut: inout Bool) -> WarrenEvent? {
        if let id = event.messageID, id.utf8.count > nameBytes || id.utf8.contains(0) { return nil }
        var event = event
        func bound(_ text: inout String?, _ limit: Int) {
            guard var value = text else { return }
            if value.utf8.contains(0) {
                value = value.replacingOccurrences(of: "\0", with: "\u{FFFD}")
                cut = true
            }
            if value.utf8.count > limit {
                value = prefix(value, limit)
                cut = true
            }
            text = value
        }
        bound(&event.type, nameBytes)
        var queue: String? = event.queue
        bound(&queue, nameBytes)
        event.queue = queue ?? ""
        var kind: String? = event.event.rawValue
        bound(&kind, 64)
        event.event = WarrenEvent.Kind(rawValue: kind ?? "")
        bound(&event.host, nameBytes)
        bound(&event.schedule, nameBytes)
        bound(&event.reason, nameBytes)
        bound(&event.traceID, nameBytes)
        bound(&event.correlationID, nameBytes)
        bound(&event.error, errorBytes)
        // PostgreSQL keeps an attempt in a 32-bit integer: a bigger one would fail the whole batch.
        if let attempt = event.attempt, attempt < 0 || attempt > Int(Int32.max) {
            event.attempt = min(max(attempt, 0), Int(Int32.max))
            cut = true
        }
        if let headers = event.headers,
            headers.count > headerCount
                || headers.contains(where: {
                    $0.key.utf8.count > nameBytes || $0.value.utf8.count > headerValueBytes || $0.key.utf8.contains(0)
                        || $0.value.utf8.contains(0)
                })
        {
            event.headers = Dictionary(
                headers.sorted { $0.key < $1.key }.prefix(headerCount).map { name, value in
                    var (name, value): (String?, String?) = (name, value)
                    bound(&name, nameBytes)
                    bound(&value, headerValueBytes)
                    return (name ?? "", value ?? "")
                },
                uniquingKeysWith: { first, _ in first })
            cut = true
        }
        bound(&event.bodyEncoding, 16)
        if let body = event.body {
            bound(&event.body, bodyBytes)
            // Base64 is cut at a whole group of four, so that what is kept still decodes.
            if event.bodyEncoding == "base64", var kept = event.body, kept.utf8.count % 4 != 0 {
                while kept.utf8.count % 4 != 0, !kept.isEmpty { kept.removeLast() }
                event.body = kept
                cut = true
            }
            if event.body?.utf8.count != body.utf8.count { event.bodyTruncated = true }
        }
        return event
    }

    /// Of `events` (one chunk of a batch, fields already bounded), those that keep each job within ``eventsPerJob``
    /// and ``deadLettersPerJob``, given how many each job has recorded already (`recordedEvents`, `recordedDeadLetters`
    /// by message id); the counts of what was skipped by ``Effect``.
    static func withinJobBounds(
        _ events: some Collection<WarrenEvent>, recordedEvents: [String: Int], recordedDeadLetters: [String: Int]
    ) -> (kept: [WarrenEvent], skipped: [Effect: Int]) {
        var eventCounts = recordedEvents
        var deadLetterCounts = recordedDeadLetters
        var kept: [WarrenEvent] = []
        kept.reserveCapacity(events.count)
        var skipped: [Effect: Int] = [:]
        for event in events {
            guard let id = event.messageID else { continue }
            guard eventCounts[id, default: 0] < eventsPerJob else {
                skipped[.eventsPerJob, default: 0] += 1
                continue
            }
            if event.event == .deadLetter {
                guard deadLetterCounts[id, default: 0] < deadLettersPerJob else {
                    skipped[.deadLettersPerJob, default: 0] += 1
                    continue
                }
                deadLetterCounts[id, default: 0] += 1
            }
            eventCounts[id, default: 0] += 1
            kept.append(event)
        }
        return (kept, skipped)
    }

    /// The first `limit` bytes of `text`, not splitting a character's UTF-8 bytes.
    static func prefix(_ text: String, _ limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var end = text.utf8.index(text.utf8.startIndex, offsetBy: limit)
        while end > text.utf8.startIndex, text.utf8[end] & 0xC0 == 0x80 { end = text.utf8.index(before: end) }
        return String(text.utf8[..<end]) ?? ""
    }
}

/// Applies ``LedgerBounds`` for a store: cuts fields, counts and logs what was cut or skipped.
struct LedgerBoundsReport: Sendable {
    private let counters: [LedgerBounds.Effect: Counter]
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
        counters = Dictionary(
            uniqueKeysWithValues: LedgerBounds.Effect.allCases.map {
                ($0, Counter(label: WarrenMetric.ledgerBounded.name, dimensions: [("bound", $0.rawValue)]))
            })
    }

    /// `events` with their fields bounded, without those that cannot be recorded.
    func bounded(_ events: [WarrenEvent]) -> [WarrenEvent] {
        var cut = 0
        var tooLong = 0
        let kept = events.compactMap { event -> WarrenEvent? in
            var wasCut = false
            guard let bounded = LedgerBounds.bounded(event, cut: &wasCut) else {
                tooLong += 1
                return nil
            }
            if wasCut { cut += 1 }
            return bounded
        }
        report([.fieldCut: cut, .badMessageID: tooLong])
        return kept
    }

    /// A dead letter taken off its queue with its displayed fields bounded. It is a real message, acked only once
    /// stored, so it is never skipped: a message id no store can key (a NUL in it) is recorded with U+FFFD in its place
    /// (the message itself keeps its own, for a replay).
    func bounded(_ letter: IngestedDeadLetter) -> IngestedDeadLetter {
        var letter = letter
        if let id = letter.event.messageID, id.utf8.contains(0) || id.utf8.count > LedgerBounds.nameBytes {
            letter.event.messageID = LedgerBounds.prefix(
                id.replacingOccurrences(of: "\0", with: "\u{FFFD}"), LedgerBounds.nameBytes)
        }
        letter.event = bounded([letter.event]).first ?? letter.event
        return letter
    }

    func report(_ counts: [LedgerBounds.Effect: Int]) {
        let counts = counts.filter { $0.value > 0 }
        guard !counts.isEmpty else { return }
        for (effect, count) in counts { counters[effect]?.increment(by: count) }
        logger.warning(
            "the ledger bounded events it was sent",
            metadata: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, "\($0.value)") }))
    }
}
