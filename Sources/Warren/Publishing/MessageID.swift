#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension WarrenPublisher {
    /// A new message id: a random (version 4) UUID in lowercase text, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, whose 122
    /// random bits come from the operating system's cryptographically secure generator. The same form as
    /// `UUID().uuidString.lowercased()`, at a fraction of its cost (docs/performance.md).
    public static func newMessageID() -> String {
        var (high, low) = randomBits()
        high = (high & ~0xF000) | 0x4000  // version 4: the high nibble of byte 6
        low = (low & ~(0b11 << 62)) | (0b10 << 62)  // RFC 4122 variant: the top bits of byte 8
        return String(unsafeUninitializedCapacity: 36) { text in
            let digits: StaticString = "0123456789abcdef"
            var position = 0
            func put(_ value: UInt64, nibbles: ClosedRange<Int>) {
                for nibble in nibbles.reversed() {
                    if position == 8 || position == 13 || position == 18 || position == 23 {
                        text[position] = UInt8(ascii: "-")
                        position += 1
                    }
                    text[position] = digits.utf8Start[Int((value >> UInt64(nibble * 4)) & 0xF)]
                    position += 1
                }
            }
            put(high, nibbles: 0...15)
            put(low, nibbles: 0...15)
            return position
        }
    }

    /// 128 random bits from the system's secure generator in one call (`getentropy`; `SystemRandomNumberGenerator`
    /// makes one per 64 bits).
    private static func randomBits() -> (UInt64, UInt64) {
        var bits: (UInt64, UInt64) = (0, 0)
        let filled = withUnsafeMutableBytes(of: &bits) { getentropy($0.baseAddress, $0.count) == 0 }
        if filled { return bits }
        var generator = SystemRandomNumberGenerator()
        return (generator.next(), generator.next())
    }
}
