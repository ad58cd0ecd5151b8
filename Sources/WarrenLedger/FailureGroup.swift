/// Dead letters that failed the same way: the same message type, dead-letter reason and error once the parts that
/// differ from one message to the next are masked (``FailureFingerprint``).
public struct FailureGroup: Sendable, Equatable, Codable {
    /// A stable id of the fingerprint (16 hex digits): the same in every process and store.
    public var groupID: String
    public var type: String?
    public var reason: String?
    /// The error with its numbers and ids masked.
    public var error: String
    public var count: Int
    public var firstAtMs: Int64
    public var lastAtMs: Int64
    /// The message id of its latest dead letter.
    public var sampleMessageID: String

    public init(
        groupID: String, type: String?, reason: String?, error: String, count: Int, firstAtMs: Int64, lastAtMs: Int64,
        sampleMessageID: String
    ) {
        self.groupID = groupID
        self.type = type
        self.reason = reason
        self.error = error
        self.count = count
        self.firstAtMs = firstAtMs
        self.lastAtMs = lastAtMs
        self.sampleMessageID = sampleMessageID
    }

    enum CodingKeys: String, CodingKey {
        case type, reason, error, count
        case groupID = "group_id"
        case firstAtMs = "first_at_ms"
        case lastAtMs = "last_at_ms"
        case sampleMessageID = "sample_message_id"
    }
}

/// Which failure groups to list: those with a dead letter in the time window (and queue), the most recent first.
public struct FailureGroupQuery: Sendable, Equatable {
    public var queue: String?
    /// Counting only dead letters at or after this time (milliseconds since 1970).
    public var sinceMs: Int64?
    /// Counting only dead letters before this time (milliseconds since 1970).
    public var untilMs: Int64?
    /// Groups listed, 1 to ``JobQuery/maximumLimit``.
    public var limit: Int

    public init(queue: String? = nil, sinceMs: Int64? = nil, untilMs: Int64? = nil, limit: Int = 50) {
        self.queue = queue
        self.sinceMs = sinceMs
        self.untilMs = untilMs
        self.limit = min(max(limit, 1), JobQuery.maximumLimit)
    }
}

/// How a dead letter's failure is told apart from others: its type, its reason and its error with what varies from
/// one message to the next masked — UUIDs as `<uuid>`, hexadecimal ids of 8 or more characters as `<hex>`, other
/// numbers as `#` — except a status code: a three-digit number that starts the error or a clause after a colon
/// (`Reject: 550 mailbox …`) or follows `HTTP`, `status`, `code` or `error` (`HTTP 503`), which stays.
public struct FailureFingerprint: Sendable, Equatable {
    /// The error as it is grouped (``mask(_:)``).
    public let maskedError: String
    /// ``groupID(type:reason:error:)``.
    public let groupID: String

    /// A dead letter's fingerprint: its error masked once, and the group id of that.
    public init(type: String?, reason: String?, error: String?) {
        maskedError = Self.mask(error ?? "")
        groupID = Self.groupID(type: type, reason: reason, maskedError: maskedError)
    }

    /// The error as it is grouped (at most 500 characters).
    public static func mask(_ error: String) -> String {
        var out = ""
        var word = ""
        var previous = ""
        var clauseStart = true
        func flush() {
            guard !word.isEmpty else { return }
            let isCode =
                word.count == 3 && word.allSatisfy(\.isNumber)
                && (clauseStart || ["http", "status", "code", "error"].contains(previous.lowercased()))
            out += isCode ? word : maskWord(word)
            previous = word
            clauseStart = false
            word = ""
        }
        for character in error.prefix(2_000) {
            if character.isASCII && (character.isLetter || character.isNumber || character == "-") {
                word.append(character)
            } else {
                flush()
                if character == ":" { clauseStart = true } else if !character.isWhitespace { clauseStart = false }
                out.append(character)
            }
        }
        flush()
        return String(out.prefix(500))
    }

    /// The group id of a dead letter: 16 hex digits of a 64-bit FNV-1a hash of type, reason and masked error.
    public static func groupID(type: String?, reason: String?, error: String?) -> String {
        groupID(type: type, reason: reason, maskedError: mask(error ?? ""))
    }

    private static func groupID(type: String?, reason: String?, maskedError: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(type ?? "")\u{1F}\(reason ?? "")\u{1F}\(maskedError)".utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private static func maskWord(_ word: String) -> String {
        let characters = Array(word)
        let isHex = { (c: Character) in c.isHexDigit }
        if characters.count == 36, [8, 13, 18, 23].allSatisfy({ characters[$0] == "-" }),
            characters.enumerated().allSatisfy({ [8, 13, 18, 23].contains($0.offset) || isHex($0.element) })
        {
            return "<uuid>"
        }
        let hexPart = word.hasPrefix("0x") ? Array(characters.dropFirst(2)) : characters
        if hexPart.count >= 8, hexPart.allSatisfy(isHex), hexPart.contains(where: \.isNumber) { return "<hex>" }
        var out = ""
        var inNumber = false
        for character in characters {
            if character.isNumber {
                if !inNumber { out.append("#") }
                inNumber = true
            } else {
                out.append(character)
                inNumber = false
            }
        }
        return out
    }
}
