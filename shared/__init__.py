"""What every hotline-gateway service needs: envelope, settings, logging, broker, lifecycle, health."""
