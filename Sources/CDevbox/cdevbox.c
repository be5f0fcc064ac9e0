#include "CDevbox.h"
