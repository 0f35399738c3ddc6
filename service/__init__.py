"""auto-topup: tops up prepaid wallets the moment they run low."""
