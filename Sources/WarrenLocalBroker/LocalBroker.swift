public enum LocalBrokerPlaceholder {}
