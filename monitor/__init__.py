"""monitor: follow one news story across many feeds; alert once per new development."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/monitor-news/monitor"
