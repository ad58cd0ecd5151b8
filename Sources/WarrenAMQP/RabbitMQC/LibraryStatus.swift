import CRabbitMQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// librabbitmq's description of a status code.
func statusText(_ status: Int32) -> String {
    String(cString: amqp_error_string2(status))
}

/// Whether a status code is one of librabbitmq's TLS failures.
func isTLSStatus(_ status: Int32) -> Bool {
    (AMQP_STATUS_SSL_SET_ENGINE_FAILED.rawValue...AMQP_STATUS_SSL_ERROR.rawValue).contains(status)
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
