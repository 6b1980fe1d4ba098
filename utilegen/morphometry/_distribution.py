class Fit: pass
class SizeDistribution: pass
