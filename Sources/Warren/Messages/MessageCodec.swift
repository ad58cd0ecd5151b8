import Foundation
import Synchronization
import WarrenJSON

/// Turns messages into bodies and back, for one content type.
public protocol MessageCodec: Sendable {
    /// The AMQP `content_type` this codec writes and reads, e.g. `application/json`.
    var contentType: String { get }
    func encode<M: Encodable>(_ message: M) throws -> [UInt8]
    func decode<M: Decodable>(_ type: M.Type, from body: [UInt8]) throws -> M
}

/// JSON, the default codec (`application/json`). Dates are ISO 8601.
public struct JSONMessageCodec: MessageCodec {
    public var contentType: String { "application/json" }
    // Configured once and shared: both are Sendable and safe to use from several tasks.
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder
    private let fastPath = FastPathRecord()

    public init() {
        encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
    }

    /// Writes most messages without Foundation's `JSONEncoder` (several times faster; the same JSON but for the order
    /// of an object's keys) and asks `JSONEncoder` for the rest, so errors are always `JSONEncoder`'s.
    public func encode<M: Encodable>(_ message: M) throws -> [UInt8] {
        if let body = FastJSON.encode(message) { return body }
        return Array(try encoder.encode(message))
    }

    /// Reads most messages without Foundation's `JSONDecoder` (several times faster, never a different result) and
    /// asks `JSONDecoder` for the rest, so values and errors are always `JSONDecoder`'s. A type the fast path keeps
    /// handing over (a `Decimal` or `Data` field, dates with fractions: ``FastPathRecord/givingUpLimit`` bodies that
    /// `JSONDecoder` then read) goes straight to `JSONDecoder` from then on, instead of being parsed twice.
    public func decode<M: Decodable>(_ type: M.Type, from body: [UInt8]) throws -> M {
        let key = ObjectIdentifier(type)
        let tryFastPath = !fastPath.skips(key)
        if tryFastPath, let value = FastJSON.decode(type, from: body) { return value }
        let value = try decoder.decode(type, from: Data(body))
        if tryFastPath { fastPath.gaveUpOnReadableBody(key) }
        return value
    }

    /// Whether `type` now goes straight to `JSONDecoder`.
    func skipsFastPath<M>(for type: M.Type) -> Bool { fastPath.skips(ObjectIdentifier(type)) }
}

/// Which message types the JSON fast path gives up on although their bodies are fine, shared by copies of a codec.
final class FastPathRecord: Sendable {
    /// Readable bodies of one type the fast path may hand over before the type goes to `JSONDecoder` for good.
    static let givingUpLimit = 8
    private let givenUp = Mutex<[ObjectIdentifier: Int]>([:])
    /// Whether `givenUp` holds anything: until it does (the usual case), a decode takes no lock.
    private let anyGivenUp = Atomic<Bool>(false)

    func skips(_ type: ObjectIdentifier) -> Bool {
        guard anyGivenUp.load(ordering: .acquiring) else { return false }
        return givenUp.withLock { ($0[type] ?? 0) >= Self.givingUpLimit }
    }

    func gaveUpOnReadableBody(_ type: ObjectIdentifier) {
        givenUp.withLock { $0[type, default: 0] += 1 }
        anyGivenUp.store(true, ordering: .releasing)
    }
}

/// The codecs a worker accepts, chosen by a delivery's `content_type`. A delivery without a content type is read
/// with the default codec.
public struct CodecRegistry: Sendable {
    public var defaultCodec: any MessageCodec {
        didSet { usual = Self.usual(codecs, defaultCodec) }
    }
    private var codecs: [String: any MessageCodec]
    /// What `codecs[defaultCodec.contentType]` gives, so the usual delivery finds its codec with one comparison.
    private var usual: (contentType: String, codec: (any MessageCodec)?)

    public init(default defaultCodec: any MessageCodec = JSONMessageCodec(), others: [any MessageCodec] = []) {
        self.defaultCodec = defaultCodec
        var codecs: [String: any MessageCodec] = [defaultCodec.contentType.lowercased(): defaultCodec]
        for codec in others { codecs[codec.contentType.lowercased()] = codec }
        self.codecs = codecs
        self.usual = Self.usual(codecs, defaultCodec)
    }

    private static func usual(_ codecs: [String: any MessageCodec], _ defaultCodec: any MessageCodec) -> (
        String, (any MessageCodec)?
    ) {
        (defaultCodec.contentType, codecs[defaultCodec.contentType])
    }

    /// The codec for `contentType` (parameters such as `; charset=utf-8` ignored), or `nil` when none is registered.
    public func codec(for contentType: String?) -> (any MessageCodec)? {
        guard let contentType, !contentType.isEmpty else { return defaultCodec }
        if contentType == usual.contentType, let codec = usual.codec { return codec }
        if let codec = codecs[contentType] { return codec }  // the usual case: exactly a registered type
        let bare =
            contentType.split(separator: ";", maxSplits: 1).first.map {
                $0.trimmingCharacters(in: .whitespaces).lowercased()
            } ?? ""
        return codecs[bare]
    }
}
