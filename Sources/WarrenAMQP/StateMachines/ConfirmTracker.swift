/// Publisher-confirm bookkeeping of one channel in confirm mode: which sequence numbers are outstanding, which a
/// `basic.ack` / `basic.nack` (single or `multiple`) settles, and which were returned as unroutable first.
///
/// Pure value type: the I/O thread feeds it events and resumes whatever it hands back.
struct ConfirmTracker<Token> {
    struct Settled {
        var sequence: UInt64
        var token: Token
        /// Set when a `basic.return` was matched to this publish before its confirm.
        var returned: ReturnedInfo?
    }

    struct ReturnedInfo: Equatable {
        var replyCode: UInt16
        var replyText: String
    }

    private struct Entry {
        var sequence: UInt64
        var token: Token?  // nil once settled out of order
        var returned: ReturnedInfo?
    }

    private var entries: [Entry] = []
    private var head = 0
    private(set) var outstanding = 0
    /// The sequence number the next publish on the channel gets (AMQP starts at 1 after `confirm.select`).
    private(set) var nextSequence: UInt64 = 1

    init() {}

    /// Records a publish and returns its sequence number.
    mutating func register(_ token: Token) -> UInt64 {
        let sequence = nextSequence
        nextSequence += 1
        entries.append(Entry(sequence: sequence, token: token))
        outstanding += 1
        return sequence
    }

    /// Settles `tag`, or with `multiple` every outstanding publish up to and including it. Unknown tags are ignored
    /// (a broker never sends them; ignoring keeps a confused peer from crashing the client).
    mutating func settle(deliveryTag tag: UInt64, multiple: Bool) -> [Settled] {
        var settled: [Settled] = []
        if multiple {
            while head < entries.count, entries[head].sequence <= tag {
                if let token = entries[head].token {
                    settled.append(
                        Settled(sequence: entries[head].sequence, token: token, returned: entries[head].returned))
                }
                head += 1
            }
        } else if let index = index(of: tag), let token = entries[index].token {
            settled.append(Settled(sequence: tag, token: token, returned: entries[index].returned))
            entries[index].token = nil
            while head < entries.count, entries[head].token == nil { head += 1 }
        }
        outstanding -= settled.count
        compactIfWorthIt()
        return settled
    }

    /// Marks the earliest outstanding, not yet returned publish that `matches` as returned by the broker.
    /// - Returns: whether one matched.
    mutating func markReturned(_ info: ReturnedInfo, where matches: (Token) -> Bool) -> Bool {
        var index = head
        while index < entries.count {
            if entries[index].returned == nil, let token = entries[index].token, matches(token) {
                entries[index].returned = info
                return true
            }
            index += 1
        }
        return false
    }

    /// Removes and returns the outstanding publishes at the head for which `isExpired` holds, stopping at the first
    /// that does not (deadlines grow with the sequence number, so the rest cannot have expired either).
    mutating func expire(where isExpired: (Token) -> Bool) -> [Token] {
        var expired: [Token] = []
        while head < entries.count {
            guard let token = entries[head].token else {
                head += 1
                continue
            }
            guard isExpired(token) else { break }
            expired.append(token)
            head += 1
        }
        outstanding -= expired.count
        compactIfWorthIt()
        return expired
    }

    /// Removes and returns every outstanding publish (the channel or connection is gone).
    mutating func removeAll() -> [Token] {
        let tokens = entries[head...].compactMap(\.token)
        entries.removeAll()
        head = 0
        outstanding = 0
        return tokens
    }

    private func index(of sequence: UInt64) -> Int? {
        var low = head
        var high = entries.count - 1
        while low <= high {
            let mid = (low + high) / 2
            if entries[mid].sequence == sequence { return mid }
            if entries[mid].sequence < sequence { low = mid + 1 } else { high = mid - 1 }
        }
        return nil
    }

    private mutating func compactIfWorthIt() {
        if head == entries.count {
            entries.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024, head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }
}
